package sizing

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// WriteText writes the plan for people: every figure with the arithmetic
// that gives it, then the terraform.tfvars.
func (p *Plan) WriteText(w io.Writer) error {
	o := &p.opts
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	why := "the largest item"
	if o.Namespace != "" {
		why = "chosen with --namespace"
	}
	line("Item: namespace %s, %d features (%s of %d namespaces)", p.Item.Namespace, p.Item.Features, why, len(p.Items))
	line("  size          %d bytes (cairn's DynamoDB item of representative values)", p.Item.Bytes)
	readKind, readMul := "eventually consistent", "0.5"
	if o.StrongReads {
		readKind, readMul = "strongly consistent", "1"
	}
	line("  read units    ⌈%d / 4096⌉ × %s (%s) = %s per item", p.Item.Bytes, readMul, readKind, fmtNum(p.ReadUnitsPerItem))
	writeKind, writeMul := "transactional bulk writes", "2"
	if !o.BulkTransactions {
		writeKind, writeMul = "plain bulk writes", "1"
	}
	line("  write units   ⌈%d / 1024⌉ × %s (%s) = %d per item", p.Item.Bytes, writeMul, writeKind, p.WriteUnitsPerItem)
	line("")

	line("Read units (RCU)")
	for i, name := range []string{"steady", "peak  "} {
		qps := []float64{o.QPS, o.peakQPS()}[i]
		line("  %s  %s queries/s × %s entities × %s = %s", name, fmtNum(qps), fmtNum(o.EntitiesPerQuery), fmtNum(p.ReadUnitsPerItem), rounded(p.readExact[i]))
	}
	line("")

	line("Write units (WCU)")
	for i, name := range []string{"steady", "peak  "} {
		qps := []float64{o.QPS, o.peakQPS()}[i]
		persisted := round6(qps * o.PersistFraction * o.entitiesPerPersistedQuery())
		uploaded := round6(o.UploadsPerSecond * o.EntitiesPerUpload)
		line("  %s  (%s queries/s × %s persisted × %s entities + %s uploads/s × %s entities) × %d = (%s + %s) × %d = %s",
			name, fmtNum(qps), fmtNum(o.PersistFraction), fmtNum(o.entitiesPerPersistedQuery()), fmtNum(o.UploadsPerSecond), fmtNum(o.EntitiesPerUpload), p.WriteUnitsPerItem,
			fmtNum(persisted), fmtNum(uploaded), p.WriteUnitsPerItem, rounded(p.writeExact[i]))
	}
	line("")

	line("Capacity mode: %s", p.CapacityMode)
	line("  swing   reads %s, writes %s: %s", ratio(p.readExact), ratio(p.writeExact), fmtRatio(p.Swing))
	line("  rule    %s up to %s× (1 / %s), %s above %s× (%d × %s), %s between",
		Provisioned, fmtNum(round2(1/TargetUtilization)), fmtNum(TargetUtilization), OnDemand,
		fmtNum(OnDemandPriceRatio*TargetUtilization), OnDemandPriceRatio, fmtNum(TargetUtilization), Autoscaled)
	line("  reason  %s", p.Reason)
	line("")

	line("Autoscaling (target %d%%)", int(TargetUtilization*100))
	for _, d := range []struct {
		name  string
		exact [2]float64
		b     Bounds
	}{{"read ", p.readExact, p.Autoscaling.Read}, {"write", p.writeExact, p.Autoscaling.Write}} {
		line("  %s  min ⌈%s / %s⌉ = %d, max ⌈%s / %s⌉ = %d", d.name,
			fmtNum(d.exact[0]), fmtNum(TargetUtilization), d.b.Min, fmtNum(d.exact[1]), fmtNum(TargetUtilization), d.b.Max)
	}
	line("")

	k := p.Kafka
	line("Kafka (MSK), at the steady rates")
	line("  records      %d bytes per record + %d bytes per entity (cairn's record encoding; %d bytes of Kafka framing and the key in the first)",
		p.Item.RecordFixedBytes, p.Item.RecordEntityBytes, KafkaRecordOverhead)
	line("  persist      (%s uploads/s + %s queries/s × %s persisted) × %d + %s entities/s × %d = %s B/s",
		fmtNum(o.UploadsPerSecond), fmtNum(o.QPS), fmtNum(o.PersistFraction), p.Item.RecordFixedBytes,
		fmtNum(p.entitiesWritten[0]), p.Item.RecordEntityBytes, fmtNum(o.persistBytes(p)))
	m := k.Metrics
	if m.RecordBytes == 0 {
		line("  metrics      no queries: no metrics records")
	} else {
		line("  metrics      one record per query server and %s s: %d bytes (cairn's metrics encoding of %d namespaces, %d queries and %d latency buckets each) + %d bytes of Kafka framing",
			fmtNum(o.MetricsInterval.Seconds()), m.RecordBytes, m.Namespaces, m.QueriesPerInterval, m.LatencyBuckets, KafkaRecordOverhead)
		line("               %d query servers × %d bytes / %s s = %s B/s",
			o.QueryServers, m.RecordBytes+KafkaRecordOverhead, fmtNum(o.MetricsInterval.Seconds()), fmtNum(m.BytesPerSecond))
	}
	line("  total        %s B/s", fmtNum(k.BytesPerSecond))
	line("  retained     %s B/s × %s s (%d h) = %s B", fmtNum(k.BytesPerSecond), fmtNum(o.Retention.Seconds()), int(o.Retention.Hours()), fmtNum(k.RetainedBytes))
	perBroker := k.RetainedBytes * float64(o.ReplicationFactor) / float64(o.BrokersCount) * o.Headroom
	line("  per broker   %s B × %d replicas / %d brokers × %s headroom = %s B = %s GiB",
		fmtNum(k.RetainedBytes), o.ReplicationFactor, o.BrokersCount, fmtNum(o.Headroom), fmtNum(math.Round(perBroker)), fmtGiB(k.StoragePerBrokerGiB))
	line("  volume size  ⌈%s⌉ = %d GiB", fmtGiB(k.StoragePerBrokerGiB), k.BrokerVolumeSize)
	line("")

	line("terraform.tfvars")
	p.TFVars.write(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteTFVars writes the plan's terraform.tfvars.
func (p *Plan) WriteTFVars(w io.Writer) error {
	var b strings.Builder
	p.TFVars.write(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

func (v TFVars) write(b *strings.Builder) {
	fmt.Fprintf(b, "%-26s = %q\n", "capacity_mode", v.CapacityMode)
	for _, kv := range []struct {
		name string
		v    int
	}{
		{"read_capacity", v.ReadCapacity},
		{"write_capacity", v.WriteCapacity},
		{"autoscaling_read_min", v.AutoscalingReadMin},
		{"autoscaling_read_max", v.AutoscalingReadMax},
		{"autoscaling_write_min", v.AutoscalingWriteMin},
		{"autoscaling_write_max", v.AutoscalingWriteMax},
		{"broker_volume_size", v.BrokerVolumeSize},
		{"log_retention_hours", v.LogRetentionHours},
		{"broker_count", v.BrokerCount},
		{"default_replication_factor", v.DefaultReplicationFactor},
	} {
		fmt.Fprintf(b, "%-26s = %d\n", kv.name, kv.v)
	}
}

// rounded formats exact units and, when they are not whole, the whole
// units they round up to.
func rounded(v float64) string {
	if v == math.Trunc(v) {
		return fmtNum(v)
	}
	return fmt.Sprintf("%s, rounded up: %d", fmtNum(v), ceil(v))
}

// ratio formats the swing of one dimension, peak / steady.
func ratio(u [2]float64) string {
	if u[1] == 0 {
		return "no load"
	}
	return fmt.Sprintf("%s / %s = %s", fmtNum(u[1]), fmtNum(u[0]), fmtRatio(swing(u)))
}

// fmtRatio formats a swing to two decimals.
func fmtRatio(v float64) string {
	if math.IsInf(v, 1) {
		return "unbounded (no steady load)"
	}
	return fmtNum(round2(v)) + "×"
}

// fmtGiB formats GiB to two decimals.
func fmtGiB(v float64) string { return fmt.Sprintf("%.2f", v) }
