package terraform_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// policyDoc is the part of an IAM policy document the docs show.
type policyDoc struct {
	Version   string
	Statement []struct {
		Sid      string
		Effect   string
		Action   []string
		Resource []string
	}
}

// TestSecurityDocPolicies checks that the policies docs/security.md shows
// are the iam module's, statement by statement, with the module evaluated
// on the placeholders the page uses.
func TestSecurityDocPolicies(t *testing.T) {
	src, err := os.ReadFile(repoRoot + "/docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(src), "\n## Least-privilege IAM\n")
	if !ok {
		t.Fatal("docs/security.md has no section Least-privilege IAM")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	docs := map[string]policyDoc{}
	for _, part := range strings.Split(section, "\n### ")[1:] {
		name, rest, _ := strings.Cut(part, "\n")
		_, body, ok := strings.Cut(rest, "```json\n")
		if !ok {
			continue
		}
		body, _, _ = strings.Cut(body, "```")
		var d policyDoc
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatalf("docs/security.md, policy %s: %v", name, err)
		}
		docs[strings.TrimSpace(name)] = d
	}

	m := loadModules(t)["modules/iam"]
	vars := defaults(t, m, map[string]cty.Value{
		"account_id":         cty.StringVal("ACCOUNT"),
		"region":             cty.StringVal("REGION"),
		"table_name":         cty.StringVal("TABLE"),
		"replica_regions":    cty.ListVal([]cty.Value{cty.StringVal("REPLICA_REGION")}),
		"kafka_cluster_arns": cty.ListVal([]cty.Value{cty.StringVal("arn:aws:kafka:REGION:ACCOUNT:cluster/CLUSTER_NAME/CLUSTER_UUID")}),
	})
	for _, policy := range []string{"serve", "write", "admin"} {
		d, ok := docs[policy]
		if !ok {
			t.Errorf("docs/security.md shows no %s policy", policy)
			continue
		}
		if d.Version != "2012-10-17" {
			t.Errorf("%s: Version %q", policy, d.Version)
		}
		b := m.block(t, "data", "aws_iam_policy_document", policy).Body
		var sids []string
		for i, sb := range b.Blocks {
			sid := attr(t, m, sb.Body, "sid", vars).AsString()
			sids = append(sids, sid)
			if i >= len(d.Statement) {
				continue
			}
			ds := d.Statement[i]
			if ds.Sid != sid || ds.Effect != "Allow" {
				t.Errorf("%s statement %d: docs show %s (%s), module has %s", policy, i, ds.Sid, ds.Effect, sid)
				continue
			}
			var actions, resources []string
			for _, v := range attr(t, m, sb.Body, "actions", vars).AsValueSlice() {
				actions = append(actions, v.AsString())
			}
			for _, v := range attr(t, m, sb.Body, "resources", vars).AsValueSlice() {
				resources = append(resources, v.AsString())
			}
			slices.Sort(actions)
			got := slices.Sorted(slices.Values(ds.Action))
			if !slices.Equal(got, actions) {
				t.Errorf("%s %s: docs show actions %v, module grants %v", policy, sid, got, actions)
			}
			if !slices.Equal(ds.Resource, resources) {
				t.Errorf("%s %s: docs show resources %v, module names %v", policy, sid, ds.Resource, resources)
			}
		}
		if len(d.Statement) != len(sids) {
			t.Errorf("%s: docs show %d statements, module has %v", policy, len(d.Statement), sids)
		}
	}
}
