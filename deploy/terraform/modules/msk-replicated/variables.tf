variable "name" {
  description = "Prefix of the names: the clusters are NAME-primary and NAME-secondary, the replicator NAME-replicator."
  type        = string
  default     = "cairn-msk"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9-]{0,43}$", var.name))
    error_message = "name must start with a letter and hold only letters, digits and hyphens, at most 44 characters."
  }
}

variable "environment" {
  description = "Value of the cairn_environment tag on every resource."
  type        = string
  default     = "production"
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

variable "kafka_version" {
  description = "Apache Kafka version of both clusters."
  type        = string
  default     = "3.6.0"
}

variable "broker_count" {
  description = "Broker nodes per cluster."
  type        = number
  default     = 3
}

variable "instance_type" {
  description = "Broker instance type of both clusters."
  type        = string
  default     = "kafka.m7g.large"
}

variable "volume_size" {
  description = "EBS storage per broker in GiB, in both clusters: the secondary holds the same data."
  type        = number
  default     = 500
}

variable "log_retention_hours" {
  description = "Broker setting log.retention.hours of both clusters."
  type        = number
  default     = 168
}

variable "default_replication_factor" {
  description = "Broker setting default.replication.factor of both clusters."
  type        = number
  default     = 3
}

variable "primary_vpc_id" {
  description = "VPC of the primary cluster."
  type        = string
}

variable "primary_private_subnet_ids" {
  description = "Private subnets of the primary cluster."
  type        = list(string)
}

variable "primary_client_cidr_blocks" {
  description = "CIDR blocks of cairn's clients in the primary region."
  type        = list(string)
  default     = []
}

variable "secondary_vpc_id" {
  description = "VPC of the secondary cluster."
  type        = string
}

variable "secondary_private_subnet_ids" {
  description = "Private subnets of the secondary cluster."
  type        = list(string)
}

variable "secondary_client_cidr_blocks" {
  description = "CIDR blocks of cairn's clients in the secondary region."
  type        = list(string)
  default     = []
}

variable "scram_username" {
  description = "SASL/SCRAM user of cairn on both clusters."
  type        = string
  default     = "cairn"
}

variable "scram_password" {
  description = "SASL/SCRAM password of cairn on both clusters."
  type        = string
  sensitive   = true
}

variable "primary_multi_vpc_iam" {
  description = "Multi-VPC private connectivity with IAM on the primary, which a cross-region replicator needs. Set false for a first apply if MSK refuses it while creating the cluster, then true."
  type        = bool
  default     = true
}

variable "topic_name_configuration" {
  description = "How replicated topics are named on the secondary: IDENTICAL (cairn.persist stays cairn.persist; cairn needs no knob) or PREFIXED_WITH_SOURCE_CLUSTER_ALIAS (cairn.persist becomes ALIAS.cairn.persist; set CAIRN_KAFKA_SECONDARY_TOPIC_PREFIX to ALIAS followed by a dot)."
  type        = string
  default     = "IDENTICAL"

  validation {
    condition     = contains(["IDENTICAL", "PREFIXED_WITH_SOURCE_CLUSTER_ALIAS"], var.topic_name_configuration)
    error_message = "topic_name_configuration must be IDENTICAL or PREFIXED_WITH_SOURCE_CLUSTER_ALIAS."
  }
}

variable "starting_position" {
  description = "Where replication of a topic starts when the replicator is created: EARLIEST copies the whole retention window, so that a failover finds every record the writers had not stored yet; LATEST only what comes after."
  type        = string
  default     = "EARLIEST"

  validation {
    condition     = contains(["EARLIEST", "LATEST"], var.starting_position)
    error_message = "starting_position must be EARLIEST or LATEST."
  }
}
