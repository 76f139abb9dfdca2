output "primary_cluster_arn" {
  description = "ARN of the primary cluster."
  value       = module.primary.cluster_arn
}

output "secondary_cluster_arn" {
  description = "ARN of the secondary cluster."
  value       = module.secondary.cluster_arn
}

output "primary_bootstrap_brokers_sasl_scram" {
  description = "SASL/SCRAM bootstrap brokers of the primary: CAIRN_KAFKA_BROKERS in normal operation."
  value       = module.primary.bootstrap_brokers_sasl_scram
}

output "secondary_bootstrap_brokers_sasl_scram" {
  description = "SASL/SCRAM bootstrap brokers of the secondary: CAIRN_KAFKA_BROKERS after a failover."
  value       = module.secondary.bootstrap_brokers_sasl_scram
}

output "replicator_arn" {
  description = "ARN of the MSK Replicator."
  value       = aws_msk_replicator.this.arn
}

output "topic_name_configuration" {
  description = "How topic names appear on the secondary."
  value       = var.topic_name_configuration
}

output "scram_username" {
  description = "SASL/SCRAM user of cairn on both clusters (CAIRN_KAFKA_SASL_USERNAME)."
  value       = module.primary.scram_username
}
