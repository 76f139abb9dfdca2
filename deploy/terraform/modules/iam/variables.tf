variable "name" {
  description = "Prefix of the policy names: NAME-serve, NAME-write, NAME-admin."
  type        = string
  default     = "cairn"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,100}$", var.name))
    error_message = "name must be 1 to 100 characters allowed in IAM names (letters, digits and +=,.@_-)."
  }
}

variable "partition" {
  description = "AWS partition of the ARNs."
  type        = string
  default     = "aws"

  validation {
    condition     = contains(["aws", "aws-cn", "aws-us-gov"], var.partition)
    error_message = "partition must be aws, aws-cn or aws-us-gov."
  }
}

variable "account_id" {
  description = "Account of the table."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be 12 digits."
  }
}

variable "region" {
  description = "Region of the table (the Global Tables replica cairn uses first)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region such as us-east-1."
  }
}

variable "table_name" {
  description = "cairn's DynamoDB table."
  type        = string
  default     = "cairn-online-store"
}

variable "replica_regions" {
  description = "Regions of the table's Global Tables replicas, which cairn uses after a failover."
  type        = list(string)
  default     = []

  validation {
    condition     = length([for r in var.replica_regions : r if !can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", r))]) == 0
    error_message = "replica_regions must be AWS regions such as us-west-2."
  }
}

variable "kafka_cluster_arns" {
  description = "MSK clusters cairn connects to with IAM access control (CAIRN_KAFKA_SASL_MECHANISM=AWS_MSK_IAM): the primary, and the secondary of a replicated pair."
  type        = list(string)

  validation {
    condition     = length(var.kafka_cluster_arns) >= 1 && length([for a in var.kafka_cluster_arns : a if !can(regex("^arn:[a-z-]+:kafka:[a-z0-9-]+:[0-9]{12}:cluster/[A-Za-z0-9-]+/[A-Za-z0-9-]+$", a))]) == 0
    error_message = "kafka_cluster_arns must be one or more MSK cluster ARNs (arn:aws:kafka:REGION:ACCOUNT:cluster/NAME/UUID)."
  }
}

variable "persist_topic" {
  description = "CAIRN_KAFKA_PERSIST_TOPIC."
  type        = string
  default     = "cairn.persist"
}

variable "metrics_topic" {
  description = "CAIRN_KAFKA_METRICS_TOPIC."
  type        = string
  default     = "cairn.metrics"
}

variable "dead_letter_topic" {
  description = "CAIRN_KAFKA_DEAD_LETTER_TOPIC."
  type        = string
  default     = "cairn.persist.dlq"
}

variable "writer_group" {
  description = "CAIRN_KAFKA_WRITER_GROUP."
  type        = string
  default     = "cairn-writer"
}

variable "metrics_group" {
  description = "CAIRN_METRICS_GROUP: the writers' metrics consumers' group."
  type        = string
  default     = "cairn-metrics"
}

variable "bloom_group_prefix" {
  description = "Prefix of the consumer groups the query servers' Bloom filter trackers record their positions in (one group per query server)."
  type        = string
  default     = "cairn-bloom."
}
