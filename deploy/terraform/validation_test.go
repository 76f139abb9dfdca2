package terraform_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// validationCase lists, as HCL expressions, values a variable's
// validations accept and values they refuse.
type validationCase struct {
	dir, variable string
	good, bad     []string
}

const (
	twoSubnets  = `["subnet-0a1b", "subnet-0c2d"]`
	goodCluster = `"arn:aws:kafka:us-east-1:123456789012:cluster/cairn-msk/1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d-3"`
	password16  = `"0123456789abcdef"`
)

// regionCase, vpcCase and the others are the checks shared by the
// variables of the same kind in several modules.
func regionCase(dir, v string) validationCase {
	return validationCase{dir, v, []string{`"us-east-1"`, `"eu-central-1"`, `"us-gov-west-1"`}, []string{`"US-EAST-1"`, `"useast1"`, `"us-east"`, `""`}}
}

func vpcCase(dir, v string) validationCase {
	return validationCase{dir, v, []string{`"vpc-0123abcd"`}, []string{`"vpc_0123"`, `"0123abcd"`, `"vpc-XYZ"`}}
}

func subnetsCase(dir, v string) validationCase {
	return validationCase{dir, v, []string{twoSubnets, `["subnet-1", "subnet-2", "subnet-3"]`}, []string{`["subnet-0a1b"]`, `[]`, `["subnet-0a1b", "sn-2"]`}}
}

func clientCIDRsCase(dir, v string) validationCase {
	return validationCase{dir, v, []string{`["10.0.0.0/16"]`, `["10.0.0.0/16", "192.168.1.0/24"]`}, []string{`[]`, `["10.0.0.0"]`, `["vpc-1"]`}}
}

func passwordCase(dir, v string) validationCase {
	return validationCase{dir, v, []string{password16}, []string{`"short"`, `""`}}
}

func capacityModeCase(dir, v string) validationCase {
	return validationCase{dir, v, []string{`"provisioned"`, `"on_demand"`, `"autoscaled"`}, []string{`"PROVISIONED"`, `"pay_per_request"`, `""`}}
}

func unitsCase(dir, v string) validationCase {
	return validationCase{dir, v, []string{`1`, `1000`}, []string{`0`, `-5`}}
}

// wholeUnitsCase checks an autoscaling floor or ceiling: whole capacity
// units from 1, with no upper bound, as DynamoDB's per-table quota (40,000
// units by default) can be raised and cairn size's large example needs more.
func wholeUnitsCase(dir, v string) validationCase {
	return validationCase{dir, v, []string{`1`, `250`, `5000`, `185715`}, []string{`0`, `-5`, `2.5`}}
}

// brokerSettingsCases checks the MSK settings cairn size prints that the
// examples pass on to the msk modules.
func brokerSettingsCases(dir string) []validationCase {
	return []validationCase{
		{dir, "log_retention_hours", []string{`1`, `24`, `168`}, []string{`0`, `1.5`, `-24`}},
		{dir, "broker_count", []string{`3`, `6`}, []string{`2`, `3.5`, `0`}},
		{dir, "default_replication_factor", []string{`1`, `3`}, []string{`0`, `2.5`}},
	}
}

// autoscalingCases checks the four autoscaling bounds of dir, named with
// prefix.
func autoscalingCases(dir, prefix string) []validationCase {
	return []validationCase{
		wholeUnitsCase(dir, prefix+"read_min"),
		wholeUnitsCase(dir, prefix+"read_max"),
		wholeUnitsCase(dir, prefix+"write_min"),
		wholeUnitsCase(dir, prefix+"write_max"),
	}
}

var validationCases = slices.Concat(baseValidationCases,
	autoscalingCases("modules/dynamodb", "autoscaling_"),
	autoscalingCases("examples/single-region", "autoscaling_"),
	autoscalingCases("examples/multi-region", "autoscaling_"),
	brokerSettingsCases("examples/single-region"),
	brokerSettingsCases("examples/multi-region"),
)

var baseValidationCases = []validationCase{
	{"modules/msk", "name", []string{`"cairn-msk"`, `"a"`}, []string{`"1cairn"`, `"cairn_msk"`, `""`, `"` + strings.Repeat("a", 55) + `"`}},
	{"modules/msk", "kafka_version", []string{`"3.6.0"`, `"3.7.x.kraft"`}, []string{`"3.6"`, `"latest"`}},
	{"modules/msk", "broker_count", []string{`3`, `6`}, []string{`2`, `3.5`, `0`}},
	{"modules/msk", "instance_type", []string{`"kafka.m7g.large"`, `"kafka.m5.4xlarge"`}, []string{`"m7g.large"`, `"kafka.m7g"`}},
	{"modules/msk", "volume_size", []string{`1`, `500`, `16384`}, []string{`0`, `16385`, `10.5`}},
	{"modules/msk", "log_retention_hours", []string{`24`, `168`}, []string{`0`, `1.5`}},
	{"modules/msk", "min_insync_replicas", []string{`1`, `2`}, []string{`0`, `1.5`}},
	{"modules/msk", "default_replication_factor", []string{`3`}, []string{`0`, `2.5`}},
	{"modules/msk", "num_partitions", []string{`12`, `1`}, []string{`0`, `-1`}},
	vpcCase("modules/msk", "vpc_id"),
	{"modules/msk", "private_subnet_ids", []string{twoSubnets, `["subnet-1", "subnet-2", "subnet-3"]`}, []string{`["subnet-1"]`, `["subnet-1", "subnet-2", "subnet-3", "subnet-4"]`, `["subnet-1", "sub-2"]`}},
	{"modules/msk", "client_cidr_blocks", []string{`[]`, `["10.0.0.0/16"]`}, []string{`["10.0.0.0"]`, `["10.0.0.0/16", "sg-1"]`}},
	{"modules/msk", "client_security_group_ids", []string{`[]`, `["sg-0123abcd"]`}, []string{`["0123abcd"]`, `["sg-1", "vpc-1"]`}},
	{"modules/msk", "scram_username", []string{`"cairn"`, `"cairn.writer_1"`}, []string{`""`, `"cairn writer"`, `"` + strings.Repeat("u", 65) + `"`}},
	passwordCase("modules/msk", "scram_password"),

	{"modules/msk-replicated", "name", []string{`"cairn-msk"`}, []string{`"cairn_msk"`, `"` + strings.Repeat("a", 45) + `"`}},
	{"modules/msk-replicated", "topic_name_configuration", []string{`"IDENTICAL"`, `"PREFIXED_WITH_SOURCE_CLUSTER_ALIAS"`}, []string{`"identical"`, `"PREFIXED"`, `""`}},
	{"modules/msk-replicated", "starting_position", []string{`"EARLIEST"`, `"LATEST"`}, []string{`"earliest"`, `"NOW"`}},

	{"modules/dynamodb", "table_name", []string{`"cairn-online-store"`, `"a.b_c"`}, []string{`"ab"`, `"cairn online store"`, `"table/x"`}},
	capacityModeCase("modules/dynamodb", "capacity_mode"),
	unitsCase("modules/dynamodb", "read_capacity"),
	{"modules/dynamodb", "write_capacity", []string{`500`}, []string{`0`, `2.5`}},
	{"modules/dynamodb", "autoscaling_target_utilization", []string{`20`, `70`, `90`}, []string{`10`, `95`, `0`}},
	{"modules/dynamodb", "replica_regions", []string{`[]`, `["us-west-2"]`, `["us-west-2", "eu-west-1"]`}, []string{`["us-west-2", "us-west-2"]`, `["uswest2"]`}},

	{"modules/dynamodb/autoscaling", "target_utilization", []string{`70`, `50`}, []string{`100`, `5`}},
	{"modules/dynamodb/autoscaling", "scale_in_cooldown", []string{`0`, `60`}, []string{`-1`}},
	{"modules/dynamodb/autoscaling", "scale_out_cooldown", []string{`0`, `60`}, []string{`-1`}},
	unitsCase("modules/dynamodb/autoscaling", "read_min"),
	unitsCase("modules/dynamodb/autoscaling", "read_max"),
	unitsCase("modules/dynamodb/autoscaling", "write_min"),
	{"modules/dynamodb/autoscaling", "write_max", []string{`2500`}, []string{`0`, `2.5`}},

	{"modules/iam", "name", []string{`"cairn"`, `"cairn-staging"`}, []string{`""`, `"cairn staging"`}},
	{"modules/iam", "partition", []string{`"aws"`, `"aws-cn"`, `"aws-us-gov"`}, []string{`"azure"`, `""`}},
	{"modules/iam", "account_id", []string{`"123456789012"`}, []string{`"12345678901"`, `"1234567890123"`, `"12345678901a"`}},
	regionCase("modules/iam", "region"),
	{"modules/iam", "replica_regions", []string{`[]`, `["us-west-2"]`}, []string{`["uswest2"]`}},
	{"modules/iam", "kafka_cluster_arns", []string{`[` + goodCluster + `]`}, []string{`[]`, `["arn:aws:kafka:us-east-1:123456789012:topic/cairn-msk/1a2b/cairn.persist"]`, `["cairn-msk"]`}},

	regionCase("examples/single-region", "region"),
	{"examples/single-region", "environment", []string{`"production"`, `"staging-2"`}, []string{`"Prod"`, `"2prod"`, `""`}},
	vpcCase("examples/single-region", "vpc_id"),
	subnetsCase("examples/single-region", "private_subnet_ids"),
	clientCIDRsCase("examples/single-region", "client_cidr_blocks"),
	passwordCase("examples/single-region", "scram_password"),
	{"examples/single-region", "broker_volume_size", []string{`500`}, []string{`0`, `20000`}},
	capacityModeCase("examples/single-region", "capacity_mode"),
	unitsCase("examples/single-region", "read_capacity"),
	unitsCase("examples/single-region", "write_capacity"),

	regionCase("examples/multi-region", "primary_region"),
	regionCase("examples/multi-region", "secondary_region"),
	{"examples/multi-region", "environment", []string{`"production"`}, []string{`"Prod"`}},
	vpcCase("examples/multi-region", "primary_vpc_id"),
	vpcCase("examples/multi-region", "secondary_vpc_id"),
	subnetsCase("examples/multi-region", "primary_private_subnet_ids"),
	subnetsCase("examples/multi-region", "secondary_private_subnet_ids"),
	clientCIDRsCase("examples/multi-region", "primary_client_cidr_blocks"),
	clientCIDRsCase("examples/multi-region", "secondary_client_cidr_blocks"),
	passwordCase("examples/multi-region", "scram_password"),
	{"examples/multi-region", "broker_volume_size", []string{`500`}, []string{`0`}},
	capacityModeCase("examples/multi-region", "capacity_mode"),
	unitsCase("examples/multi-region", "read_capacity"),
	unitsCase("examples/multi-region", "write_capacity"),
}

// validates reports whether every validation of variable v in m accepts
// value, given as an HCL expression.
func validates(t *testing.T, m *module, v *hclsyntax.Block, value string) bool {
	t.Helper()
	e, diags := hclsyntax.ParseExpression([]byte(value), "value", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("case value %s: %s", value, diags.Error())
	}
	val, diags := e.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("case value %s: %s", value, diags.Error())
	}
	val, err := convert.Convert(val, varType(t, v))
	if err != nil {
		t.Fatalf("case value %s does not fit the type of %s: %v", value, v.Labels[0], err)
	}
	vars := map[string]cty.Value{v.Labels[0]: val}
	ok, n := true, 0
	for _, vb := range v.Body.Blocks {
		if vb.Type != "validation" {
			continue
		}
		n++
		if msg, found := vb.Body.Attributes["error_message"]; !found || !strings.Contains(exprText(m, msg.Expr), v.Labels[0]) {
			t.Errorf("%s: variable %s: error_message must name the variable", m.dir, v.Labels[0])
		}
		ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)}, Functions: functions}
		got, diags := vb.Body.Attributes["condition"].Expr.Value(ctx)
		if diags.HasErrors() {
			// Terraform reports a condition that cannot be evaluated as an
			// error too, but a validation should decide, not fail.
			t.Errorf("%s: variable %s: condition on %s: %s", m.dir, v.Labels[0], value, diags.Error())
			return false
		}
		if !got.True() {
			ok = false
		}
	}
	if n == 0 {
		t.Fatalf("%s: variable %s has no validation", m.dir, v.Labels[0])
	}
	return ok
}

// TestValidations evaluates every variable validation of every module on
// values it must accept and values it must refuse, and fails when a
// variable with a validation has no case here.
func TestValidations(t *testing.T) {
	mods := loadModules(t)
	covered := map[string]bool{}
	for _, c := range validationCases {
		key := c.dir + ":" + c.variable
		covered[key] = true
		t.Run(key, func(t *testing.T) {
			m := mods[c.dir]
			if m == nil {
				t.Fatalf("no module %s", c.dir)
			}
			v := m.variables()[c.variable]
			if v == nil {
				t.Fatalf("%s has no variable %s", c.dir, c.variable)
			}
			if len(c.bad) == 0 {
				t.Fatal("a case needs a value to refuse")
			}
			for _, g := range c.good {
				if !validates(t, m, v, g) {
					t.Errorf("refuses %s, which it should accept", g)
				}
			}
			for _, b := range c.bad {
				if validates(t, m, v, b) {
					t.Errorf("accepts %s, which it should refuse", b)
				}
			}
		})
	}
	for dir, m := range mods {
		for name, v := range m.variables() {
			for _, b := range v.Body.Blocks {
				if b.Type == "validation" && !covered[dir+":"+name] {
					t.Errorf("%s: variable %s has a validation and no case in validationCases", dir, name)
					break
				}
			}
		}
	}
}
