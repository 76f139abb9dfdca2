output "policy_arns" {
  description = "ARNs of the read and write scaling policies."
  value       = { for k, p in aws_appautoscaling_policy.this : k => p.arn }
}
