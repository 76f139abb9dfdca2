output "bootstrap_brokers_sasl_scram" {
  description = "SASL/SCRAM bootstrap brokers."
  value       = module.msk.bootstrap_brokers_sasl_scram
}

output "table_name" {
  description = "Name of the online store table."
  value       = module.dynamodb.table_name
}

output "table_arn" {
  description = "ARN of the online store table."
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
  description = "Environment of cairn serve and cairn write; the password goes in the file CAIRN_KAFKA_SASL_PASSWORD_FILE names."
  value = {
    CAIRN_ONLINE_STORE         = "dynamodb:///${module.dynamodb.table_name}?region=${var.region}"
    CAIRN_KAFKA_BROKERS        = module.msk.bootstrap_brokers_sasl_scram
    CAIRN_KAFKA_TLS            = "true"
    CAIRN_KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
    CAIRN_KAFKA_SASL_USERNAME  = module.msk.scram_username
  }
}
