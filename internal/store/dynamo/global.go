package dynamo

import (
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// terraformModule is where the table's replicas and stream are declared.
const terraformModule = "deploy/terraform/modules/dynamodb"

// globalTableVersion is the version of Global Tables whose replicas
// DescribeTable lists, and the one the Terraform module creates.
const globalTableVersion = "2019.11.21"

// GlobalTableError is returned by [Open] when the table is configured as a
// global table (DYNAMODB_GLOBAL_TABLE_REGIONS) but DescribeTable in this
// region does not show one: each problem names the region or setting and
// how to fix it.
type GlobalTableError struct {
	// Table and Region are the table checked and the region it was
	// described in.
	Table, Region string
	// Problems holds one line per thing missing or wrong.
	Problems []string
}

func (e *GlobalTableError) Error() string {
	return fmt.Sprintf("dynamo: table %q in region %s is not the global table DYNAMODB_GLOBAL_TABLE_REGIONS declares:\n  %s",
		e.Table, e.Region, strings.Join(e.Problems, "\n  "))
}

// checkGlobalTable returns a *GlobalTableError listing every way t, as
// described in region, falls short of a global table replicated in
// regions with the stream Global Tables replicate from; nil when it does
// not. DescribeTable lists the replicas in the other regions; the one
// described may or may not appear among them.
func checkGlobalTable(t *types.TableDescription, region string, regions []string) error {
	e := &GlobalTableError{Table: aws.ToString(t.TableName), Region: region}
	problem := func(format string, args ...any) { e.Problems = append(e.Problems, fmt.Sprintf(format, args...)) }

	if !slices.Contains(regions, region) {
		problem("region %s: this process's region is not in DYNAMODB_GLOBAL_TABLE_REGIONS (%s)", region, strings.Join(regions, ","))
	}
	switch s := t.StreamSpecification; {
	case s == nil || !aws.ToBool(s.StreamEnabled):
		problem("stream: disabled; Global Tables replicate from a stream of NEW_AND_OLD_IMAGES "+
			"(%s turns it on when replica_regions is not empty)", terraformModule)
	case s.StreamViewType != types.StreamViewTypeNewAndOldImages:
		problem("stream: view type %s; Global Tables need NEW_AND_OLD_IMAGES (stream_view_type in %s)", s.StreamViewType, terraformModule)
	}
	if v := aws.ToString(t.GlobalTableVersion); v != "" && v != globalTableVersion {
		problem("global table version %s: want %s, whose replicas DescribeTable lists (recreate the replicas with %s)",
			v, globalTableVersion, terraformModule)
	}
	replicas := map[string]types.ReplicaDescription{}
	for _, r := range t.Replicas {
		replicas[aws.ToString(r.RegionName)] = r
	}
	for _, want := range regions {
		if want == region {
			continue
		}
		r, ok := replicas[want]
		switch {
		case !ok:
			problem("region %s: no replica (add %s to replica_regions in %s)", want, want, terraformModule)
		case r.ReplicaStatus != types.ReplicaStatusActive:
			problem("region %s: replica is %s, not ACTIVE (wait for it, or see its ReplicaStatusDescription: %s)",
				want, r.ReplicaStatus, aws.ToString(r.ReplicaStatusDescription))
		}
	}
	var extra []string
	for name := range replicas {
		if name != region && !slices.Contains(regions, name) {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		problem("region %s: the table has a replica there that DYNAMODB_GLOBAL_TABLE_REGIONS does not list (add it, or remove it from replica_regions in %s)",
			name, terraformModule)
	}
	if len(e.Problems) > 0 {
		return e
	}
	return nil
}
