output "table_name" {
  description = "Name of the table."
  value       = local.table.name
}

output "table_arn" {
  description = "ARN of the table in this provider's region."
  value       = local.table.arn
}

output "stream_arn" {
  description = "ARN of the table's stream; null without replicas."
  value       = local.table.stream_arn
}

output "replica_regions" {
  description = "Regions holding a replica."
  value       = var.replica_regions
}

output "ttl_attribute" {
  description = "Attribute DynamoDB's Time to Live expires items by."
  value       = local.ttl_attribute
}
