output "serve_policy_arn" {
  description = "Policy to attach to the role of the query servers (cairn serve)."
  value       = aws_iam_policy.serve.arn
}

output "write_policy_arn" {
  description = "Policy to attach to the role of the persistence writers (cairn write)."
  value       = aws_iam_policy.write.arn
}

output "admin_policy_arn" {
  description = "Policy to attach to whoever runs cairn topics create, or a store that creates its table."
  value       = aws_iam_policy.admin.arn
}

output "serve_policy_json" {
  description = "The serve policy document."
  value       = data.aws_iam_policy_document.serve.json
}

output "write_policy_json" {
  description = "The write policy document."
  value       = data.aws_iam_policy_document.write.json
}

output "admin_policy_json" {
  description = "The admin policy document."
  value       = data.aws_iam_policy_document.admin.json
}
