package terraform_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// nested returns the body reached from b through nested blocks of the
// given types (the first of each), or fails t.
func nested(t *testing.T, b *hclsyntax.Body, types ...string) *hclsyntax.Body {
	t.Helper()
	for _, typ := range types {
		var next *hclsyntax.Body
		for _, c := range b.Blocks {
			if c.Type == typ {
				next = c.Body
				break
			}
		}
		if next == nil {
			t.Fatalf("no %s block (path %v)", typ, types)
		}
		b = next
	}
	return b
}

// attr evaluates attribute name of body in m with vars.
func attr(t *testing.T, m *module, body *hclsyntax.Body, name string, vars map[string]cty.Value) cty.Value {
	t.Helper()
	a, ok := body.Attributes[name]
	if !ok {
		t.Fatalf("%s: no attribute %s", m.dir, name)
	}
	return eval(t, m, a.Expr, vars)
}

// wantValue fails t unless got equals want.
func wantValue(t *testing.T, what string, got, want cty.Value) {
	t.Helper()
	if !got.Type().Equals(want.Type()) {
		// Compare numbers with numbers and strings with strings whatever
		// the collection type: tuples and lists of the same elements agree.
		if got.CanIterateElements() && want.CanIterateElements() {
			gs, ws := got.AsValueSlice(), want.AsValueSlice()
			if len(gs) == len(ws) {
				for i := range gs {
					wantValue(t, what, gs[i], ws[i])
				}
				return
			}
		}
		t.Errorf("%s = %#v, want %#v", what, got, want)
		return
	}
	if !got.RawEquals(want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func TestMSKSettings(t *testing.T) {
	m := loadModules(t)["modules/msk"]
	vars := defaults(t, m, map[string]cty.Value{"scram_password": cty.StringVal("0123456789abcdef")})

	conf := m.block(t, "resource", "aws_msk_configuration", "this").Body
	wantValue(t, "kafka_versions", attr(t, m, conf, "kafka_versions", vars), cty.ListVal([]cty.Value{cty.StringVal("3.6.0")}))
	props := map[string]string{}
	for line := range strings.Lines(attr(t, m, conf, "server_properties", vars).AsString()) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("server_properties line %q is not key=value", line)
		}
		props[k] = v
	}
	for k, v := range map[string]string{
		"auto.create.topics.enable":  "false",
		"log.retention.hours":        "168",
		"min.insync.replicas":        "2",
		"default.replication.factor": "3",
		"num.partitions":             "12",
	} {
		if props[k] != v {
			t.Errorf("server_properties %s = %q, want %q", k, props[k], v)
		}
	}

	cl := m.block(t, "resource", "aws_msk_cluster", "this").Body
	wantValue(t, "kafka_version", attr(t, m, cl, "kafka_version", vars), cty.StringVal("3.6.0"))
	wantValue(t, "number_of_broker_nodes", attr(t, m, cl, "number_of_broker_nodes", vars), cty.NumberIntVal(3))
	wantValue(t, "instance_type", attr(t, m, nested(t, cl, "broker_node_group_info"), "instance_type", vars), cty.StringVal("kafka.m7g.large"))
	wantValue(t, "volume_size", attr(t, m, nested(t, cl, "broker_node_group_info", "storage_info", "ebs_storage_info"), "volume_size", vars), cty.NumberIntVal(500))
	wantValue(t, "sasl scram", attr(t, m, nested(t, cl, "client_authentication", "sasl"), "scram", vars), cty.True)
	transit := nested(t, cl, "encryption_info", "encryption_in_transit")
	wantValue(t, "client_broker", attr(t, m, transit, "client_broker", vars), cty.StringVal("TLS"))
	wantValue(t, "in_cluster", attr(t, m, transit, "in_cluster", vars), cty.True)
	wantValue(t, "tags", attr(t, m, cl, "tags", vars), cty.ObjectVal(map[string]cty.Value{"cairn_environment": cty.StringVal("production")}))

	// The SCRAM secret: named AmazonMSK_..., encrypted with a customer
	// managed key, associated with the cluster.
	sec := m.block(t, "resource", "aws_secretsmanager_secret", "scram").Body
	if name := attr(t, m, sec, "name", vars).AsString(); !strings.HasPrefix(name, "AmazonMSK_") {
		t.Errorf("SCRAM secret name %q does not start with AmazonMSK_", name)
	}
	if got := exprText(m, sec.Attributes["kms_key_id"].Expr); got != "aws_kms_key.scram.key_id" {
		t.Errorf("SCRAM secret kms_key_id = %s, want the module's own key", got)
	}
	assoc := m.block(t, "resource", "aws_msk_scram_secret_association", "this").Body
	if got := exprText(m, assoc.Attributes["cluster_arn"].Expr); got != "aws_msk_cluster.this.arn" {
		t.Errorf("association cluster_arn = %s", got)
	}

	// The SASL/SCRAM port is open to cairn's clients; IAM's only with iam_auth.
	wantValue(t, "client_ports", evalLocals(t, m, vars)["client_ports"], cty.TupleVal([]cty.Value{cty.NumberIntVal(9096)}))
	vars["iam_auth"] = cty.True
	wantValue(t, "client_ports with iam_auth", evalLocals(t, m, vars)["client_ports"], cty.TupleVal([]cty.Value{cty.NumberIntVal(9096), cty.NumberIntVal(9098)}))
	vars["client_cidr_blocks"] = cty.ListVal([]cty.Value{cty.StringVal("10.0.0.0/16")})
	rules := evalLocals(t, m, vars)["client_rules"]
	if rules.LengthInt() != 2 || !rules.Type().IsObjectType() || !rules.Type().HasAttribute("9096-10.0.0.0/16") {
		t.Errorf("client_rules for one CIDR with iam_auth = %#v, want 9096 and 9098 from it", rules)
	}
	m.block(t, "output", "bootstrap_brokers_sasl_scram")

	// multi_vpc_iam without iam_auth is refused before anything is created.
	pre := nested(t, cl, "lifecycle", "precondition")
	for _, c := range []struct{ iam, multi, ok bool }{{false, false, true}, {true, true, true}, {true, false, true}, {false, true, false}} {
		vars["iam_auth"], vars["multi_vpc_iam"] = cty.BoolVal(c.iam), cty.BoolVal(c.multi)
		if got := attr(t, m, pre, "condition", vars).True(); got != c.ok {
			t.Errorf("precondition with iam_auth=%v multi_vpc_iam=%v holds: %v, want %v", c.iam, c.multi, got, c.ok)
		}
	}
}

func TestMSKReplicatorSettings(t *testing.T) {
	m := loadModules(t)["modules/msk-replicated"]
	vars := defaults(t, m, nil)
	r := m.block(t, "resource", "aws_msk_replicator", "this").Body
	if got := exprText(m, r.Attributes["provider"].Expr); got != "aws.secondary" {
		t.Errorf("replicator provider = %s, want aws.secondary (a replicator lives in its target's region)", got)
	}
	info := nested(t, r, "replication_info_list")
	wantValue(t, "target_compression_type", attr(t, m, info, "target_compression_type", vars), cty.StringVal("NONE"))
	topics := nested(t, info, "topic_replication")
	wantValue(t, "topics_to_replicate", attr(t, m, topics, "topics_to_replicate", vars), cty.TupleVal([]cty.Value{cty.StringVal(".*")}))
	for _, a := range []string{"detect_and_copy_new_topics", "copy_topic_configurations", "copy_access_control_lists_for_topics"} {
		wantValue(t, a, attr(t, m, topics, a, vars), cty.True)
	}
	wantValue(t, "topic_name_configuration", attr(t, m, nested(t, topics, "topic_name_configuration"), "type", vars), cty.StringVal("IDENTICAL"))
	groups := nested(t, info, "consumer_group_replication")
	wantValue(t, "consumer_groups_to_replicate", attr(t, m, groups, "consumer_groups_to_replicate", vars), cty.TupleVal([]cty.Value{cty.StringVal(".*")}))
	wantValue(t, "synchronise_consumer_group_offsets", attr(t, m, groups, "synchronise_consumer_group_offsets", vars), cty.True)

	// Both clusters come from the msk module with IAM access control,
	// which the replicator needs; the source also with multi-VPC access.
	for _, c := range []string{"primary", "secondary"} {
		mb := m.block(t, "module", c).Body
		wantValue(t, c+" iam_auth", attr(t, m, mb, "iam_auth", vars), cty.True)
	}
	wantValue(t, "primary multi_vpc_iam", attr(t, m, m.block(t, "module", "primary").Body, "multi_vpc_iam", vars), cty.True)
	if _, ok := m.block(t, "module", "secondary").Body.Attributes["multi_vpc_iam"]; ok {
		t.Error("the secondary turns on multi-VPC connectivity, which only a replicator's source needs")
	}
	if got := exprText(m, r.Attributes["service_execution_role_arn"].Expr); got != "aws_iam_role.replicator.arn" {
		t.Errorf("service_execution_role_arn = %s, want the module's role", got)
	}

	// The replicator's role reaches the two clusters' own topics and
	// groups, nothing else.
	for _, st := range m.block(t, "data", "aws_iam_policy_document", "replicator").Body.Blocks {
		res := exprText(m, st.Body.Attributes["resources"].Expr)
		if !slices.Contains([]string{"local.clusters", "local.topics", "local.groups"}, res) {
			t.Errorf("replicator statement on %s, want the clusters, their topics or their groups", res)
		}
	}
}

// ttlAttr returns the attribute internal/store/dynamo writes item expiries
// to (its constant ttlAttr).
func ttlAttr(t *testing.T) string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../../internal/store/dynamo/write.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if n.Name == "ttlAttr" {
					v, err := strconv.Unquote(vs.Values[i].(*ast.BasicLit).Value)
					if err != nil {
						t.Fatal(err)
					}
					return v
				}
			}
		}
	}
	t.Fatal("internal/store/dynamo/write.go declares no ttlAttr")
	return ""
}

func TestDynamoDBSettings(t *testing.T) {
	m := loadModules(t)["modules/dynamodb"]
	for _, name := range []string{"this", "autoscaled"} {
		b := m.block(t, "resource", "aws_dynamodb_table", name).Body
		vars := defaults(t, m, nil)
		wantValue(t, name+" hash_key", attr(t, m, b, "hash_key", vars), cty.StringVal("pk"))
		wantValue(t, name+" range_key", attr(t, m, b, "range_key", vars), cty.StringVal("sk"))
		attrs := map[string]string{}
		for _, c := range b.Blocks {
			if c.Type == "attribute" {
				attrs[attr(t, m, c.Body, "name", vars).AsString()] = attr(t, m, c.Body, "type", vars).AsString()
			}
		}
		if len(attrs) != 2 || attrs["pk"] != "S" || attrs["sk"] != "S" {
			t.Errorf("%s attributes = %v, want pk and sk, both S", name, attrs)
		}
		wantValue(t, name+" point_in_time_recovery", attr(t, m, nested(t, b, "point_in_time_recovery"), "enabled", vars), cty.True)
		wantValue(t, name+" server_side_encryption", attr(t, m, nested(t, b, "server_side_encryption"), "enabled", vars), cty.True)
		ttl := nested(t, b, "ttl")
		wantValue(t, name+" ttl attribute", attr(t, m, ttl, "attribute_name", vars), cty.StringVal(ttlAttr(t)))
		wantValue(t, name+" ttl enabled", attr(t, m, ttl, "enabled", vars), cty.True)
		wantValue(t, name+" tags", attr(t, m, b, "tags", vars), cty.ObjectVal(map[string]cty.Value{"cairn_environment": cty.StringVal("production")}))

		// Global Tables: replicas from the list turn the stream on.
		if got := exprText(m, nested(t, b, "dynamic").Attributes["for_each"].Expr); got != "var.replica_regions" {
			t.Errorf("%s replica blocks come from %s, want var.replica_regions", name, got)
		}
		wantValue(t, name+" stream_enabled", attr(t, m, b, "stream_enabled", vars), cty.False)
		wantValue(t, name+" stream_view_type", attr(t, m, b, "stream_view_type", vars), cty.NullVal(cty.String))
		vars["replica_regions"] = cty.ListVal([]cty.Value{cty.StringVal("us-west-2")})
		wantValue(t, name+" stream_enabled with replicas", attr(t, m, b, "stream_enabled", vars), cty.True)
		wantValue(t, name+" stream_view_type with replicas", attr(t, m, b, "stream_view_type", vars), cty.StringVal("NEW_AND_OLD_IMAGES"))
	}

	// Capacity modes: which table exists, its billing mode and capacities.
	for _, c := range []struct {
		mode               string
		this, autoscaled   int64
		billing            string
		read, write        cty.Value
		autoscalingModules int64
	}{
		{"provisioned", 1, 0, "PROVISIONED", cty.NumberIntVal(1000), cty.NumberIntVal(500), 0},
		{"on_demand", 1, 0, "PAY_PER_REQUEST", cty.NullVal(cty.Number), cty.NullVal(cty.Number), 0},
		{"autoscaled", 0, 1, "PROVISIONED", cty.NumberIntVal(1000), cty.NumberIntVal(500), 1},
	} {
		vars := defaults(t, m, map[string]cty.Value{"capacity_mode": cty.StringVal(c.mode)})
		for name, want := range map[string]int64{"this": c.this, "autoscaled": c.autoscaled} {
			b := m.block(t, "resource", "aws_dynamodb_table", name).Body
			wantValue(t, c.mode+": count of "+name, attr(t, m, b, "count", vars), cty.NumberIntVal(want))
			wantValue(t, c.mode+": billing_mode", attr(t, m, b, "billing_mode", vars), cty.StringVal(c.billing))
			wantValue(t, c.mode+": read_capacity", attr(t, m, b, "read_capacity", vars), c.read)
			wantValue(t, c.mode+": write_capacity", attr(t, m, b, "write_capacity", vars), c.write)
		}
		wantValue(t, c.mode+": autoscaling modules", attr(t, m, m.block(t, "module", "autoscaling").Body, "count", vars), cty.NumberIntVal(c.autoscalingModules))
	}
	ignored := exprText(m, nested(t, m.block(t, "resource", "aws_dynamodb_table", "autoscaled").Body, "lifecycle").Attributes["ignore_changes"].Expr)
	if ignored != "[read_capacity, write_capacity]" {
		t.Errorf("autoscaled table ignores %s, want [read_capacity, write_capacity]: Terraform must not undo the autoscaler", ignored)
	}
}

func TestAutoscalingSettings(t *testing.T) {
	mods := loadModules(t)
	m := mods["modules/dynamodb/autoscaling"]
	vars := defaults(t, m, map[string]cty.Value{"table_name": cty.StringVal("cairn-online-store")})
	dims := evalLocals(t, m, vars)["dimensions"]
	for _, c := range []struct {
		dim, unit, metric string
		min, max          int64
	}{
		{"read", "ReadCapacityUnits", "DynamoDBReadCapacityUtilization", 500, 5000},
		{"write", "WriteCapacityUnits", "DynamoDBWriteCapacityUtilization", 250, 2500},
	} {
		d := dims.GetAttr(c.dim)
		wantValue(t, c.dim+" min", d.GetAttr("min"), cty.NumberIntVal(c.min))
		wantValue(t, c.dim+" max", d.GetAttr("max"), cty.NumberIntVal(c.max))
		wantValue(t, c.dim+" unit", d.GetAttr("unit"), cty.StringVal(c.unit))
		wantValue(t, c.dim+" metric", d.GetAttr("metric"), cty.StringVal(c.metric))
	}
	target := m.block(t, "resource", "aws_appautoscaling_target", "this").Body
	wantValue(t, "service_namespace", attr(t, m, target, "service_namespace", vars), cty.StringVal("dynamodb"))
	wantValue(t, "resource_id", attr(t, m, target, "resource_id", vars), cty.StringVal("table/cairn-online-store"))
	policy := m.block(t, "resource", "aws_appautoscaling_policy", "this").Body
	wantValue(t, "policy_type", attr(t, m, policy, "policy_type", vars), cty.StringVal("TargetTrackingScaling"))
	tt := nested(t, policy, "target_tracking_scaling_policy_configuration")
	wantValue(t, "target_value", attr(t, m, tt, "target_value", vars), cty.NumberIntVal(70))
	wantValue(t, "scale_in_cooldown", attr(t, m, tt, "scale_in_cooldown", vars), cty.NumberIntVal(60))
	wantValue(t, "scale_out_cooldown", attr(t, m, tt, "scale_out_cooldown", vars), cty.NumberIntVal(60))

	// The table module passes its own floors and ceilings, whose defaults
	// must be the same documented ones.
	parent := mods["modules/dynamodb"]
	pv := defaults(t, parent, nil)
	for child, p := range map[string]string{
		"read_min": "autoscaling_read_min", "read_max": "autoscaling_read_max",
		"write_min": "autoscaling_write_min", "write_max": "autoscaling_write_max",
		"target_utilization": "autoscaling_target_utilization",
	} {
		wantValue(t, "modules/dynamodb "+p, pv[p], vars[child])
		got := exprText(parent, parent.block(t, "module", "autoscaling").Body.Attributes[child].Expr)
		if got != "var."+p {
			t.Errorf("modules/dynamodb passes %s = %s, want var.%s", child, got, p)
		}
	}
}
