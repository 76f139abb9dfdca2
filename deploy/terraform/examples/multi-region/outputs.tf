output "primary_bootstrap_brokers_sasl_scram" {
  description = "SASL/SCRAM bootstrap brokers of the primary cluster."
  value       = module.msk.primary_bootstrap_brokers_sasl_scram
}

output "secondary_bootstrap_brokers_sasl_scram" {
  description = "SASL/SCRAM bootstrap brokers of the secondary cluster, for a failover."
  value       = module.msk.secondary_bootstrap_brokers_sasl_scram
}

output "table_name" {
  description = "Name of the online store table, the same in both regions."
  value       = module.dynamodb.table_name
}

output "table_arn" {
  description = "ARN of the online store table in the primary region."
  value       = module.dynamodb.table_arn
}

output "policy_arns" {
  description = "Policies to attach: serve to the query servers' role, write to the writers', admin to whoever runs cairn topics create."
  value = {
    serve = module.iam.serve_policy_arn
    write = module.iam.write_policy_arn
    admin = module.iam.admin_policy_arn
  }
}

output "cairn_environment" {
  description = "Environment of cairn serve and cairn write in the primary region; the password goes in the file CAIRN_KAFKA_SASL_PASSWORD_FILE names."
  value = {
    CAIRN_ONLINE_STORE         = "dynamodb:///${module.dynamodb.table_name}?region=${var.primary_region}"
    CAIRN_KAFKA_BROKERS        = module.msk.primary_bootstrap_brokers_sasl_scram
    CAIRN_KAFKA_TLS            = "true"
    CAIRN_KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
    CAIRN_KAFKA_SASL_USERNAME  = module.msk.scram_username
  }
}

output "cairn_environment_after_failover" {
  description = "The same for the secondary region after a failover: the topics keep their names (IDENTICAL)."
  value = {
    CAIRN_ONLINE_STORE         = "dynamodb:///${module.dynamodb.table_name}?region=${var.secondary_region}"
    CAIRN_KAFKA_BROKERS        = module.msk.secondary_bootstrap_brokers_sasl_scram
    CAIRN_KAFKA_TLS            = "true"
    CAIRN_KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
    CAIRN_KAFKA_SASL_USERNAME  = module.msk.scram_username
  }
}
