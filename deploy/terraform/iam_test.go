package terraform_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/cairnfs/cairn/internal/bloom"
	"github.com/cairnfs/cairn/internal/config"
)

// repoRoot is the module root, relative to this package.
const repoRoot = "../.."

// goFiles calls fn with every non-test Go file under internal/ and cmd/,
// but internal/testserver's: test fixtures (brokers, replicators) that no
// role of cairn runs.
func goFiles(t *testing.T, fn func(rel string, f *ast.File)) {
	t.Helper()
	fset := token.NewFileSet()
	fixtures := filepath.Join(repoRoot, "internal", "testserver")
	for _, top := range []string{"internal", "cmd"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, top), func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && path == fixtures {
				return filepath.SkipDir
			}
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(repoRoot, path)
			fn(filepath.ToSlash(rel), f)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func importsPath(f *ast.File, path string) bool {
	for _, im := range f.Imports {
		if p, _ := strconv.Unquote(im.Path.Value); p == path {
			return true
		}
	}
	return false
}

var (
	inputType  = regexp.MustCompile(`^([A-Z][A-Za-z]+)Input$`)
	waiterOrPg = regexp.MustCompile(`^New([A-Z][A-Za-z]+)(Paginator|Waiter)$`)
)

// dynamoOps returns the DynamoDB operations cairn's code calls, read from
// every package importing the SDK's dynamodb client: methods called on a
// client (a value named client), operation inputs built
// (dynamodb.XInput), paginators and waiters (TableExists and
// TableNotExists poll DescribeTable). setup holds those only called from
// a function named createTable.
func dynamoOps(t *testing.T) (all, setup map[string]bool) {
	t.Helper()
	const sdk = "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	all, setup = map[string]bool{}, map[string]bool{}
	elsewhere := map[string]bool{}
	goFiles(t, func(rel string, f *ast.File) {
		if !importsPath(f, sdk) {
			return
		}
		for _, d := range f.Decls {
			fd, isFunc := d.(*ast.FuncDecl)
			inSetup := isFunc && fd.Name.Name == "createTable"
			ast.Inspect(d, func(n ast.Node) bool {
				var op string
				switch n := n.(type) {
				case *ast.CallExpr:
					sel, ok := n.Fun.(*ast.SelectorExpr)
					if !ok {
						return true
					}
					switch x := sel.X.(type) {
					case *ast.SelectorExpr:
						if x.Sel.Name == "client" {
							op = sel.Sel.Name
						}
					case *ast.Ident:
						if x.Name == "client" {
							op = sel.Sel.Name
						}
						if x.Name == "dynamodb" {
							if m := waiterOrPg.FindStringSubmatch(sel.Sel.Name); m != nil {
								op = m[1]
								if m[2] == "Waiter" {
									op = "DescribeTable" // TableExists, TableNotExists
								}
							}
						}
					}
				case *ast.SelectorExpr:
					if x, ok := n.X.(*ast.Ident); ok && x.Name == "dynamodb" {
						if m := inputType.FindStringSubmatch(n.Sel.Name); m != nil {
							op = m[1]
						}
					}
				}
				if op != "" {
					all[op] = true
					if inSetup {
						setup[op] = true
					} else {
						elsewhere[op] = true
					}
				}
				return true
			})
		}
	})
	for op := range setup {
		if elsewhere[op] {
			delete(setup, op)
		}
	}
	return all, setup
}

// statement is one statement of an aws_iam_policy_document.
type statement struct {
	policy, sid string
	actions     []string
	resources   []string // the locals its resources name
}

// policyStatements returns the statements of the iam module's policy
// documents.
func policyStatements(t *testing.T, m *module) []statement {
	t.Helper()
	var out []statement
	for _, b := range m.blocks("data") {
		if b.Labels[0] != "aws_iam_policy_document" {
			continue
		}
		for _, sb := range b.Body.Blocks {
			if sb.Type != "statement" {
				continue
			}
			st := statement{policy: b.Labels[1], sid: attr(t, m, sb.Body, "sid", nil).AsString()}
			for _, a := range attr(t, m, sb.Body, "actions", nil).AsValueSlice() {
				st.actions = append(st.actions, a.AsString())
			}
			for _, tr := range sb.Body.Attributes["resources"].Expr.Variables() {
				if tr.RootName() != "local" {
					t.Errorf("statement %s of %s names resources other than the module's ARN locals: %s", st.sid, st.policy, exprText(m, sb.Body.Attributes["resources"].Expr))
				}
				st.resources = append(st.resources, attrName(tr, 1))
			}
			out = append(out, st)
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }

// TestIAMDynamoDBActions checks that the iam module grants exactly the
// DynamoDB operations the code calls: the runtime ones to serve and
// write, the table creation ones to admin only.
func TestIAMDynamoDBActions(t *testing.T) {
	all, setup := dynamoOps(t)
	if !all["BatchGetItem"] || !all["UpdateItem"] {
		t.Fatalf("found DynamoDB operations %v: the scan of internal/store/dynamo missed the read or write path", sortedKeys(all))
	}
	t.Logf("DynamoDB operations in the code: %v; only at table creation: %v", sortedKeys(all), sortedKeys(setup))
	runtime := map[string]bool{}
	for op := range all {
		if !setup[op] {
			runtime["dynamodb:"+op] = true
		}
	}
	wantSetup := map[string]bool{}
	for op := range setup {
		wantSetup["dynamodb:"+op] = true
	}
	m := loadModules(t)["modules/iam"]
	got := map[string]map[string]bool{}
	for _, st := range policyStatements(t, m) {
		for _, a := range st.actions {
			if !strings.HasPrefix(a, "dynamodb:") {
				continue
			}
			if got[st.policy] == nil {
				got[st.policy] = map[string]bool{}
			}
			got[st.policy][a] = true
			if !slices.Equal(st.resources, []string{"table_arns"}) {
				t.Errorf("%s statement %s: DynamoDB actions on %v, want exactly local.table_arns", st.policy, st.sid, st.resources)
			}
		}
	}
	for policy, want := range map[string]map[string]bool{"serve": runtime, "write": runtime, "admin": wantSetup} {
		if !maps.Equal(got[policy], want) {
			t.Errorf("policy %s grants DynamoDB %v; the code calls %v", policy, sortedKeys(got[policy]), sortedKeys(want))
		}
	}

	// The table ARNs: the table in its region and each replica.
	vars := defaults(t, m, map[string]cty.Value{
		"account_id":         cty.StringVal("123456789012"),
		"region":             cty.StringVal("us-east-1"),
		"replica_regions":    cty.ListVal([]cty.Value{cty.StringVal("us-west-2")}),
		"kafka_cluster_arns": cty.ListVal([]cty.Value{cty.StringVal("arn:aws:kafka:us-east-1:123456789012:cluster/cairn-msk/abc-1")}),
	})
	wantValue(t, "table_arns", evalLocals(t, m, vars)["table_arns"], cty.TupleVal([]cty.Value{
		cty.StringVal("arn:aws:dynamodb:us-east-1:123456789012:table/cairn-online-store"),
		cty.StringVal("arn:aws:dynamodb:us-west-2:123456789012:table/cairn-online-store"),
	}))
}

// kafkaGrant is one row of the table in docs/security.md: what a cairn
// role does on which of its Kafka resources.
type kafkaGrant struct {
	role, resource string
	actions        []string
}

// kafkaGrants is the documented table of the Kafka actions each role
// needs under MSK IAM access control, and why:
//
//	serve  connects; describes and produces to the persistence and
//	       metrics topics; its Bloom filter tracker reads the persistence
//	       topic, records its position in a group of its own
//	       (cairn-bloom.<id>: describe, commit, delete at exit), and reads
//	       the writers' committed offsets.
//	write  connects; consumes the persistence topic in the writers' group
//	       (describe, join, commit); produces dead letters with the
//	       idempotent producer (WriteDataIdempotently on the cluster);
//	       reads the Bloom trackers' positions (list and fetch offsets);
//	       its metrics consumer reads the metrics topic in a group of
//	       its own (cairn-metrics).
//	admin  `cairn topics create`: creates the three topics, and
//	       reconciles existing ones (configurations and partitions);
//	       `cairn status`: describes the topics and their settings, and
//	       the writers' group and its lag.
var kafkaGrants = []kafkaGrant{
	{"serve", "cluster_arns", []string{"Connect"}},
	{"serve", "persist_topic_arns", []string{"DescribeTopic", "WriteData", "ReadData"}},
	{"serve", "metrics_topic_arns", []string{"DescribeTopic", "WriteData"}},
	{"serve", "bloom_group_arns", []string{"DescribeGroup", "AlterGroup", "DeleteGroup"}},
	{"serve", "writer_group_arns", []string{"DescribeGroup"}},

	{"write", "cluster_arns", []string{"Connect", "WriteDataIdempotently"}},
	{"write", "persist_topic_arns", []string{"DescribeTopic", "ReadData"}},
	{"write", "dead_letter_topic_arns", []string{"DescribeTopic", "WriteData"}},
	{"write", "writer_group_arns", []string{"DescribeGroup", "AlterGroup"}},
	{"write", "bloom_group_arns", []string{"DescribeGroup"}},
	{"write", "metrics_topic_arns", []string{"DescribeTopic", "ReadData"}},
	{"write", "metrics_group_arns", []string{"DescribeGroup", "AlterGroup"}},

	{"admin", "cluster_arns", []string{"Connect"}},
	{"admin", "all_topic_arns", []string{"CreateTopic", "DescribeTopic", "AlterTopic", "DescribeTopicDynamicConfiguration", "AlterTopicDynamicConfiguration"}},
	{"admin", "writer_group_arns", []string{"DescribeGroup"}},
}

// grantSets returns role -> resource -> actions.
func grantSets(gs []kafkaGrant) map[string]map[string]map[string]bool {
	out := map[string]map[string]map[string]bool{}
	for _, g := range gs {
		if out[g.role] == nil {
			out[g.role] = map[string]map[string]bool{}
		}
		if out[g.role][g.resource] == nil {
			out[g.role][g.resource] = map[string]bool{}
		}
		for _, a := range g.actions {
			out[g.role][g.resource]["kafka-cluster:"+a] = true
		}
	}
	return out
}

// TestIAMKafkaActions checks that the iam module's Kafka statements are
// exactly kafkaGrants, that the ARNs are those of cairn's topics and
// groups, and that the topic and group names default to cairn's.
func TestIAMKafkaActions(t *testing.T) {
	m := loadModules(t)["modules/iam"]
	got := map[string]map[string]map[string]bool{}
	for _, st := range policyStatements(t, m) {
		for _, a := range st.actions {
			if !strings.HasPrefix(a, "kafka-cluster:") {
				continue
			}
			for _, r := range st.resources {
				if got[st.policy] == nil {
					got[st.policy] = map[string]map[string]bool{}
				}
				if got[st.policy][r] == nil {
					got[st.policy][r] = map[string]bool{}
				}
				got[st.policy][r][a] = true
			}
		}
	}
	want := grantSets(kafkaGrants)
	for _, role := range []string{"serve", "write", "admin"} {
		for _, r := range sortedKeys(boolKeys(want[role], got[role])) {
			if !maps.Equal(got[role][r], want[role][r]) {
				t.Errorf("policy %s grants %v on local.%s; the documented table says %v", role, sortedKeys(got[role][r]), r, sortedKeys(want[role][r]))
			}
		}
	}

	// Every action's prerequisites (MSK's "required actions") are granted
	// to the same role.
	required := map[string][]string{
		"ReadData":                       {"Connect", "DescribeTopic", "AlterGroup"},
		"WriteData":                      {"Connect", "DescribeTopic"},
		"WriteDataIdempotently":          {"Connect", "WriteData"},
		"DescribeTopic":                  {"Connect"},
		"CreateTopic":                    {"Connect"},
		"AlterTopic":                     {"Connect", "DescribeTopic"},
		"DescribeGroup":                  {"Connect"},
		"AlterGroup":                     {"Connect", "DescribeGroup"},
		"DeleteGroup":                    {"Connect", "DescribeGroup"},
		"AlterTopicDynamicConfiguration": {"Connect", "DescribeTopicDynamicConfiguration"},
	}
	for role, byRes := range want {
		has := map[string]bool{}
		for _, acts := range byRes {
			for a := range acts {
				has[strings.TrimPrefix(a, "kafka-cluster:")] = true
			}
		}
		for a := range has {
			for _, r := range required[a] {
				if !has[r] {
					t.Errorf("role %s has %s without %s, which MSK requires with it", role, a, r)
				}
			}
		}
	}

	// The ARNs: topic/CLUSTER_NAME/CLUSTER_UUID/TOPIC, group/.../GROUP, on
	// each cluster.
	cluster := "arn:aws:kafka:us-east-1:123456789012:cluster/cairn-msk/1a2b-3"
	vars := defaults(t, m, map[string]cty.Value{
		"account_id":         cty.StringVal("123456789012"),
		"region":             cty.StringVal("us-east-1"),
		"kafka_cluster_arns": cty.ListVal([]cty.Value{cty.StringVal(cluster)}),
	})
	locals := evalLocals(t, m, vars)
	prefix := "arn:aws:kafka:us-east-1:123456789012:"
	for local, want := range map[string][]string{
		"cluster_arns":           {cluster},
		"persist_topic_arns":     {prefix + "topic/cairn-msk/1a2b-3/cairn.persist"},
		"metrics_topic_arns":     {prefix + "topic/cairn-msk/1a2b-3/cairn.metrics"},
		"dead_letter_topic_arns": {prefix + "topic/cairn-msk/1a2b-3/cairn.persist.dlq"},
		"writer_group_arns":      {prefix + "group/cairn-msk/1a2b-3/cairn-writer"},
		"metrics_group_arns":     {prefix + "group/cairn-msk/1a2b-3/cairn-metrics"},
		"bloom_group_arns":       {prefix + "group/cairn-msk/1a2b-3/cairn-bloom.*"},
	} {
		var got []string
		for _, v := range locals[local].AsValueSlice() {
			got = append(got, v.AsString())
		}
		if !slices.Equal(got, want) {
			t.Errorf("local.%s = %v, want %v", local, got, want)
		}
	}

	// The names default to cairn's own defaults.
	knobs := map[string]string{}
	for _, k := range config.Knobs {
		knobs[k.Name] = k.Default
	}
	for variable, want := range map[string]string{
		"persist_topic":      knobs["CAIRN_KAFKA_PERSIST_TOPIC"],
		"metrics_topic":      knobs["CAIRN_KAFKA_METRICS_TOPIC"],
		"dead_letter_topic":  knobs["CAIRN_KAFKA_DEAD_LETTER_TOPIC"],
		"writer_group":       knobs["CAIRN_KAFKA_WRITER_GROUP"],
		"metrics_group":      knobs["CAIRN_METRICS_GROUP"],
		"bloom_group_prefix": bloom.DefaultGroupPrefix,
	} {
		if want == "" {
			t.Errorf("no default for %s in cairn's configuration", variable)
		}
		if got := vars[variable].AsString(); got != want {
			t.Errorf("variable %s defaults to %q; cairn's default is %q", variable, got, want)
		}
	}
}

// boolKeys returns the union of the keys of a and b.
func boolKeys[V any](a, b map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// kafkaRoles says which role runs the Kafka code of each file; a file
// calling franz-go that is not listed fails TestKafkaActionsFromCode, so
// that new Kafka code is given to a role and its actions checked.
var kafkaRoles = map[string][]string{
	"internal/queue/producer.go":   {"serve"},
	"internal/queue/topic.go":      {"admin"},
	"internal/queue/probe.go":      {"serve", "write", "admin"},
	"internal/queue/queue.go":      {"serve", "write", "admin"},
	"internal/bloom/tracker.go":    {"serve"},
	"internal/bloom/barrier.go":    {"write"},
	"internal/writer/writer.go":    {"write"},
	"internal/writer/pause.go":     {"write"},
	"internal/writer/health.go":    {"write"},
	"internal/status/status.go":    {"admin"},
	"internal/metrics/consumer.go": {"write"},
	"internal/queue/lag.go":        {"serve"},
}

// kafkaCallActions maps franz-go calls to the MSK actions they need.
var kafkaCallActions = map[string][]string{
	// kgo
	"NewClient":         {"Connect"},
	"ConsumeTopics":     {"DescribeTopic", "ReadData"},
	"ConsumePartitions": {"DescribeTopic", "ReadData"},
	"ConsumerGroup":     {"DescribeGroup", "AlterGroup"},
	"CommitRecords":     {"AlterGroup"},
	"ProduceSync":       {"DescribeTopic", "WriteData"},
	"TryProduce":        {"DescribeTopic", "WriteData"},
	"Produce":           {"DescribeTopic", "WriteData"},
	// kadm
	"CreateTopics":          {"CreateTopic", "DescribeTopic"},
	"ListStartOffsets":      {"DescribeTopic"},
	"ListEndOffsets":        {"DescribeTopic"},
	"ListGroups":            {"DescribeGroup"},
	"FetchManyOffsets":      {"DescribeGroup"},
	"FetchOffsetsForTopics": {"DescribeGroup", "DescribeTopic"},
	"CommitAllOffsets":      {"AlterGroup"},
	"DeleteGroups":          {"DeleteGroup"},
	"DescribeTopicConfigs":  {"DescribeTopicDynamicConfiguration"},
	"AlterTopicConfigs":     {"AlterTopicDynamicConfiguration", "DescribeTopicDynamicConfiguration"},
	"CreatePartitions":      {"AlterTopic", "DescribeTopic"},
	"UpdatePartitions":      {"AlterTopic", "DescribeTopic"},
	"ListTopics":            {"DescribeTopic"},
	"Lag":                   {"DescribeGroup", "DescribeTopic"},
	"DescribeGroups":        {"DescribeGroup"},
}

// kafkaAhead lists actions granted before the code calls them, by role,
// with the reason. None today.
var kafkaAhead = map[string][]string{}

// TestKafkaActionsFromCode derives each role's Kafka actions from the
// franz-go calls in its files and checks them against kafkaGrants: every
// action the code needs is granted, and every action granted is needed
// (or listed in kafkaAhead). A file that produces with a client that
// does not disable idempotence needs WriteDataIdempotently.
func TestKafkaActionsFromCode(t *testing.T) {
	derived := map[string]map[string]bool{}
	goFiles(t, func(rel string, f *ast.File) {
		usesKgo := importsPath(f, "github.com/twmb/franz-go/pkg/kgo") || importsPath(f, "github.com/twmb/franz-go/pkg/kadm")
		if !usesKgo || strings.HasPrefix(rel, "cmd/") || strings.HasPrefix(rel, "internal/queue/embedded") ||
			strings.HasPrefix(rel, "internal/bench/") {
			return // cmd wires; the embedded broker is cairn dev's own, and cairn bench reads only the one it starts
		}
		roles, ok := kafkaRoles[rel]
		if !ok {
			t.Errorf("%s calls franz-go but kafkaRoles gives it no role", rel)
			return
		}
		acts := map[string]bool{}
		var clients, nonIdempotent int
		produces := false
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			name := sel.Sel.Name
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == "kadm" {
				return true // kadm.NewClient wraps a kgo client
			}
			switch name {
			case "NewClient":
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "kgo" {
					clients++
				}
			case "DisableIdempotentWrite":
				nonIdempotent++
			case "ProduceSync", "TryProduce", "Produce":
				produces = true
			}
			for _, a := range kafkaCallActions[name] {
				acts[a] = true
			}
			return true
		})
		if produces && clients > nonIdempotent {
			acts["WriteDataIdempotently"] = true
		}
		for _, r := range roles {
			if derived[r] == nil {
				derived[r] = map[string]bool{}
			}
			maps.Copy(derived[r], acts)
		}
	})
	for rel := range kafkaRoles {
		if _, err := os.Stat(filepath.Join(repoRoot, rel)); err != nil {
			t.Errorf("kafkaRoles names %s: %v", rel, err)
		}
	}
	for _, role := range sortedKeys(boolKeys(derived, derived)) {
		t.Logf("role %s: the code needs %v", role, sortedKeys(derived[role]))
	}
	for role, byRes := range grantSets(kafkaGrants) {
		granted := map[string]bool{}
		for _, acts := range byRes {
			for a := range acts {
				granted[strings.TrimPrefix(a, "kafka-cluster:")] = true
			}
		}
		for a := range derived[role] {
			if !granted[a] {
				t.Errorf("role %s: the code needs %s, which kafkaGrants does not grant", role, a)
			}
		}
		for a := range granted {
			if !derived[role][a] && !slices.Contains(kafkaAhead[role], a) {
				t.Errorf("role %s: %s is granted but no code of the role needs it", role, a)
			}
		}
	}
}
