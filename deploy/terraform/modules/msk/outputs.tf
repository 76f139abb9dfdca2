output "cluster_arn" {
  description = "ARN of the MSK cluster."
  value       = aws_msk_cluster.this.arn
}

output "cluster_name" {
  description = "Name of the MSK cluster."
  value       = aws_msk_cluster.this.cluster_name
}

output "cluster_uuid" {
  description = "UUID of the MSK cluster, part of its topic and group ARNs."
  value       = aws_msk_cluster.this.cluster_uuid
}

output "bootstrap_brokers_sasl_scram" {
  description = "SASL/SCRAM bootstrap brokers (port 9096): CAIRN_KAFKA_BROKERS."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_scram
}

output "bootstrap_brokers_sasl_iam" {
  description = "IAM bootstrap brokers (port 9098), empty unless iam_auth is set."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_iam
}

output "security_group_id" {
  description = "Security group of the brokers."
  value       = aws_security_group.msk.id
}

output "scram_secret_arn" {
  description = "ARN of the Secrets Manager secret holding cairn's SCRAM credentials."
  value       = aws_secretsmanager_secret.scram.arn
}

output "scram_username" {
  description = "SASL/SCRAM user: CAIRN_KAFKA_SASL_USERNAME."
  value       = var.scram_username
}

output "configuration_arn" {
  description = "ARN of the MSK configuration."
  value       = aws_msk_configuration.this.arn
}
