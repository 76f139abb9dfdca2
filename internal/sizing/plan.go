package sizing

import (
	"fmt"
	"math"

	"github.com/cairnfs/cairn/internal/feature"
	"github.com/cairnfs/cairn/internal/store/dynamo"
)

// The capacity-mode rule's constants (see [Plan.CapacityMode]).
const (
	// TargetUtilization is the autoscaling target, and the most of its
	// capacity a table is planned to use: 70%.
	TargetUtilization = 0.7
	// OnDemandPriceRatio is what a unit consumed on demand costs, roughly,
	// in units of steady-state provisioned capacity: 7.
	OnDemandPriceRatio = 7
)

// The capacity modes, as the dynamodb Terraform module's capacity_mode
// variable spells them.
const (
	Provisioned = "provisioned"
	Autoscaled  = "autoscaled"
	OnDemand    = "on_demand"
)

// Units are capacity units at steady state and at peak, rounded up to the
// whole units DynamoDB provisions.
type Units struct {
	// Steady is the units at the steady rates (--qps).
	Steady int `json:"steady"`
	// Peak is the units at the peak rates (--peak-qps).
	Peak int `json:"peak"`
}

// Bounds are an autoscaling floor and ceiling.
type Bounds struct {
	// Min is the floor: the steady units at the target utilization.
	Min int `json:"min"`
	// Max is the ceiling: the peak units at the target utilization.
	Max int `json:"max"`
}

// Autoscaling is the autoscaling plan of both dimensions.
type Autoscaling struct {
	// Target is the target utilization, TargetUtilization.
	Target float64 `json:"target"`
	// Read and Write are the bounds of read and write units.
	Read  Bounds `json:"read"`
	Write Bounds `json:"write"`
}

// Kafka is the MSK storage plan.
type Kafka struct {
	// BytesPerSecond is what enters Kafka at steady state, before
	// replication.
	BytesPerSecond float64 `json:"bytes_per_second"`
	// RetainedBytes is BytesPerSecond over the retention window.
	RetainedBytes float64 `json:"retained_bytes"`
	// StoragePerBrokerGiB is the storage each broker needs, replicas and
	// headroom included, rounded up to the hundredth.
	StoragePerBrokerGiB float64 `json:"storage_per_broker_gib"`
	// BrokerVolumeSize is the EBS volume size of each broker, whole GiB.
	BrokerVolumeSize int `json:"broker_volume_size"`
	// Metrics is the metrics topic's share.
	Metrics Metrics `json:"metrics"`
}

// Plan is the result of [Compute]. Its JSON form is what `cairn size
// --json` prints.
type Plan struct {
	opts Options

	// Items are the representative items of every namespace; Item is the
	// one sized.
	Items []Item `json:"items"`
	Item  Item   `json:"item"`
	// ReadUnitsPerItem and WriteUnitsPerItem price one read and one write
	// of Item.
	ReadUnitsPerItem  float64 `json:"read_units_per_item"`
	WriteUnitsPerItem int     `json:"write_units_per_item"`

	// Entities read and written per second, and the exact units before
	// rounding, steady ([0]) and at peak ([1]).
	entitiesRead, entitiesWritten [2]float64
	readExact, writeExact         [2]float64

	ReadUnits  Units `json:"read_units"`
	WriteUnits Units `json:"write_units"`

	// Swing is the larger ratio of peak to steady units of the two
	// dimensions (+Inf when a dimension has a peak but no steady load);
	// CapacityMode follows from it, as Reason says.
	Swing        float64 `json:"-"`
	CapacityMode string  `json:"capacity_mode"`
	Reason       string  `json:"reason"`

	Autoscaling Autoscaling `json:"autoscaling"`
	Kafka       Kafka       `json:"kafka"`

	// TFVars are the terraform.tfvars of the example modules.
	TFVars TFVars `json:"tfvars"`
}

// TFVars are the variables of deploy/terraform's example modules that a
// plan sets, named as there: each is a variable both examples declare and
// validate, and pass on to the module argument of the same name
// (broker_volume_size to the msk modules' volume_size).
type TFVars struct {
	// CapacityMode is provisioned, autoscaled or on_demand.
	CapacityMode string `json:"capacity_mode"`
	// ReadCapacity and WriteCapacity are the table's capacities: the
	// ceilings when provisioned, the floors (its starting capacity) when
	// autoscaled, unused on demand.
	ReadCapacity  int `json:"read_capacity"`
	WriteCapacity int `json:"write_capacity"`
	// The autoscaling floors and ceilings, as in Autoscaling.
	AutoscalingReadMin  int `json:"autoscaling_read_min"`
	AutoscalingReadMax  int `json:"autoscaling_read_max"`
	AutoscalingWriteMin int `json:"autoscaling_write_min"`
	AutoscalingWriteMax int `json:"autoscaling_write_max"`
	// BrokerVolumeSize is each broker's EBS volume, GiB.
	BrokerVolumeSize int `json:"broker_volume_size"`
	// LogRetentionHours is the brokers' log.retention.hours.
	LogRetentionHours int `json:"log_retention_hours"`
	// BrokerCount is the MSK cluster's broker count (the msk module's
	// broker_count).
	BrokerCount int `json:"broker_count"`
	// DefaultReplicationFactor is the topics' replication factor, the
	// brokers' default.replication.factor (the msk module's
	// default_replication_factor).
	DefaultReplicationFactor int `json:"default_replication_factor"`
}

// Compute plans the capacity of o's workload over the registry reg (which
// Options.Features names; the caller loads it). It validates o first.
func Compute(o Options, reg *feature.Registry) (*Plan, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	items, err := o.items(reg)
	if err != nil {
		return nil, err
	}
	p := &Plan{opts: o, Items: items}
	if o.Namespace == "" {
		p.Item = items[0]
		for _, it := range items[1:] {
			if it.Bytes > p.Item.Bytes {
				p.Item = it
			}
		}
	} else {
		found := false
		for _, it := range items {
			if it.Namespace == o.Namespace {
				p.Item, found = it, true
			}
		}
		if !found {
			return nil, fmt.Errorf("--namespace: %q is not a namespace of %s with features besides its primary key", o.Namespace, o.Features)
		}
	}
	if o.RecordSize > 0 {
		p.Item.RecordEntityBytes = o.RecordSize
	}

	p.ReadUnitsPerItem = dynamo.ReadUnits(p.Item.Bytes, o.StrongReads)
	p.WriteUnitsPerItem = dynamo.WriteUnits(p.Item.Bytes, o.BulkTransactions)
	for i, qps := range []float64{o.QPS, o.peakQPS()} {
		p.entitiesRead[i] = round6(qps * o.EntitiesPerQuery)
		p.entitiesWritten[i] = round6(qps*o.PersistFraction*o.entitiesPerPersistedQuery() + o.UploadsPerSecond*o.EntitiesPerUpload)
		p.readExact[i] = round6(p.entitiesRead[i] * p.ReadUnitsPerItem)
		p.writeExact[i] = round6(p.entitiesWritten[i] * float64(p.WriteUnitsPerItem))
	}
	p.ReadUnits = Units{ceil(p.readExact[0]), ceil(p.readExact[1])}
	p.WriteUnits = Units{ceil(p.writeExact[0]), ceil(p.writeExact[1])}

	p.Autoscaling = Autoscaling{Target: TargetUtilization,
		Read:  bounds(p.readExact),
		Write: bounds(p.writeExact),
	}
	p.Swing = max(swing(p.readExact), swing(p.writeExact))
	switch {
	case p.Swing <= 1/TargetUtilization:
		p.CapacityMode = Provisioned
		p.Reason = fmt.Sprintf("the peak is at most %s× the steady load, within the headroom the %d%% target keeps: provision the ceiling and skip autoscaling's lag",
			fmtNum(round2(1/TargetUtilization)), int(TargetUtilization*100))
	case p.Swing > OnDemandPriceRatio*TargetUtilization:
		p.CapacityMode = OnDemand
		p.Reason = fmt.Sprintf("the peak is over %s× the steady load: a floor covering that swing costs more than on-demand's ≈%d× price for the steady load, and a lower floor throttles while autoscaling catches up",
			fmtNum(OnDemandPriceRatio*TargetUtilization), OnDemandPriceRatio)
	default:
		p.CapacityMode = Autoscaled
		p.Reason = fmt.Sprintf("the peak is between %s× and %s× the steady load: the floor holds the steady load at the %d%% target, and even at its ceiling around the clock the table costs less than on-demand's ≈%d× price for the steady load",
			fmtNum(round2(1/TargetUtilization)), fmtNum(OnDemandPriceRatio*TargetUtilization), int(TargetUtilization*100), OnDemandPriceRatio)
	}

	p.Kafka = o.kafka(p, reg)
	if v := p.Kafka.BrokerVolumeSize; v > MaxBrokerVolumeGiB {
		need := int(math.Ceil(p.Kafka.StoragePerBrokerGiB * float64(o.BrokersCount) / MaxBrokerVolumeGiB))
		return nil, fmt.Errorf("--brokers-count: %d brokers need %d GiB each for the --retention window, above MSK's %d GiB per broker: use at least %d brokers, or a shorter --retention",
			o.BrokersCount, v, MaxBrokerVolumeGiB, need)
	}

	readCap, writeCap := p.Autoscaling.Read.Max, p.Autoscaling.Write.Max
	if p.CapacityMode == Autoscaled {
		readCap, writeCap = p.Autoscaling.Read.Min, p.Autoscaling.Write.Min
	}
	p.TFVars = TFVars{
		CapacityMode:             p.CapacityMode,
		ReadCapacity:             readCap,
		WriteCapacity:            writeCap,
		AutoscalingReadMin:       p.Autoscaling.Read.Min,
		AutoscalingReadMax:       p.Autoscaling.Read.Max,
		AutoscalingWriteMin:      p.Autoscaling.Write.Min,
		AutoscalingWriteMax:      p.Autoscaling.Write.Max,
		BrokerVolumeSize:         p.Kafka.BrokerVolumeSize,
		LogRetentionHours:        int(o.Retention.Hours()),
		BrokerCount:              o.BrokersCount,
		DefaultReplicationFactor: o.ReplicationFactor,
	}
	return p, nil
}

// kafka plans the MSK storage of p.
func (o *Options) kafka(p *Plan, reg *feature.Registry) Kafka {
	k := Kafka{Metrics: o.metricsPlan(reg)}
	k.BytesPerSecond = round6(o.persistBytes(p) + k.Metrics.BytesPerSecond)
	k.RetainedBytes = k.BytesPerSecond * o.Retention.Seconds()
	perBroker := k.RetainedBytes * float64(o.ReplicationFactor) / float64(o.BrokersCount) * o.Headroom
	k.StoragePerBrokerGiB = math.Ceil(round6(perBroker/(1<<30)*100)) / 100
	k.BrokerVolumeSize = max(1, int(math.Ceil(k.StoragePerBrokerGiB)))
	return k
}

// records returns the persistence records per second at steady state:
// one per upload and one per persisted query.
func (o *Options) records() float64 {
	return round6(o.UploadsPerSecond + o.QPS*o.PersistFraction)
}

// persistBytes returns the bytes per second into the persistence topic
// at steady state.
func (o *Options) persistBytes(p *Plan) float64 {
	return round6(o.records()*float64(p.Item.RecordFixedBytes) + p.entitiesWritten[0]*float64(p.Item.RecordEntityBytes))
}

// bounds returns the autoscaling floor and ceiling of a dimension whose
// exact steady and peak units are u: the units at which the steady load
// and the peak run at the target utilization, rounded up, at least 1.
func bounds(u [2]float64) Bounds {
	lo := max(1, ceil(u[0]/TargetUtilization))
	return Bounds{Min: lo, Max: max(lo, ceil(u[1]/TargetUtilization))}
}

// swing returns the ratio of peak to steady units u: 1 with no load, +Inf
// with a peak but no steady load.
func swing(u [2]float64) float64 {
	switch {
	case u[1] == 0:
		return 1
	case u[0] == 0:
		return math.Inf(1)
	}
	return u[1] / u[0]
}

// ceil rounds v up to a whole number, ignoring float64 noise below 1e-9.
func ceil(v float64) int { return int(math.Ceil(v - 1e-9)) }

// round6 rounds v to six decimals, so that products of decimal inputs
// print as the decimals they are.
func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// round2 rounds v to two decimals.
func round2(v float64) float64 { return math.Round(v*100) / 100 }
