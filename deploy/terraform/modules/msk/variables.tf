variable "name" {
  description = "Name of the MSK cluster; also names its configuration, security group, KMS key and SCRAM secret."
  type        = string
  default     = "cairn-msk"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9-]{0,53}$", var.name))
    error_message = "name must start with a letter and hold only letters, digits and hyphens, at most 54 characters."
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
  description = "Apache Kafka version of the brokers and of the configuration."
  type        = string
  default     = "3.6.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.([0-9]+|x)(\\.[a-z0-9.-]+)?$", var.kafka_version))
    error_message = "kafka_version must be an MSK version such as 3.6.0 or 3.7.x.kraft."
  }
}

variable "broker_count" {
  description = "Number of broker nodes: a multiple of the number of subnets, at least 3 so that a topic of replication factor 3 keeps min.insync.replicas = 2 with one broker down."
  type        = number
  default     = 3

  validation {
    condition     = var.broker_count >= 3 && floor(var.broker_count) == var.broker_count
    error_message = "broker_count must be a whole number of at least 3."
  }
}

variable "instance_type" {
  description = "Broker instance type. Storage, not compute, is what grows; raise this only for a measured broker bottleneck."
  type        = string
  default     = "kafka.m7g.large"

  validation {
    condition     = can(regex("^kafka\\.[a-z0-9]+\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must be an MSK broker type such as kafka.m7g.large."
  }
}

variable "volume_size" {
  description = "EBS storage per broker in GiB (1 to 16384). Size it for the retention window: cairn size prints the figure."
  type        = number
  default     = 500

  validation {
    condition     = var.volume_size >= 1 && var.volume_size <= 16384 && floor(var.volume_size) == var.volume_size
    error_message = "volume_size must be a whole number of GiB from 1 to 16384."
  }
}

variable "auto_create_topics_enable" {
  description = "Broker setting auto.create.topics.enable. cairn creates its topics with `cairn topics create`; keep it false so that a misspelt topic fails instead of appearing with the wrong settings."
  type        = bool
  default     = false
}

variable "log_retention_hours" {
  description = "Broker setting log.retention.hours, the retention of topics created without their own. The main driver of storage; `cairn topics create` sets retention.ms on cairn's topics (CAIRN_TOPIC_RETENTION)."
  type        = number
  default     = 168

  validation {
    condition     = var.log_retention_hours >= 1 && floor(var.log_retention_hours) == var.log_retention_hours
    error_message = "log_retention_hours must be a whole number of hours, at least 1."
  }
}

variable "min_insync_replicas" {
  description = "Broker setting min.insync.replicas: replicas that must hold a record before an acks=all produce succeeds."
  type        = number
  default     = 2

  validation {
    condition     = var.min_insync_replicas >= 1 && floor(var.min_insync_replicas) == var.min_insync_replicas
    error_message = "min_insync_replicas must be a whole number, at least 1."
  }
}

variable "default_replication_factor" {
  description = "Broker setting default.replication.factor."
  type        = number
  default     = 3

  validation {
    condition     = var.default_replication_factor >= 1 && floor(var.default_replication_factor) == var.default_replication_factor
    error_message = "default_replication_factor must be a whole number, at least 1."
  }
}

variable "num_partitions" {
  description = "Broker setting num.partitions, the partitions of topics created without their own."
  type        = number
  default     = 12

  validation {
    condition     = var.num_partitions >= 1 && floor(var.num_partitions) == var.num_partitions
    error_message = "num_partitions must be a whole number, at least 1."
  }
}

variable "vpc_id" {
  description = "VPC of the brokers."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC id such as vpc-0123abcd."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets of the brokers, one per availability zone (2 or 3)."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2 && length(var.private_subnet_ids) <= 3 && length([for s in var.private_subnet_ids : s if !can(regex("^subnet-[0-9a-f]+$", s))]) == 0
    error_message = "private_subnet_ids must be 2 or 3 subnet ids such as subnet-0123abcd."
  }
}

variable "client_cidr_blocks" {
  description = "CIDR blocks of cairn's query servers and writers, allowed to reach the brokers' SASL ports."
  type        = list(string)
  default     = []

  validation {
    condition     = length([for c in var.client_cidr_blocks : c if !can(regex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$", c))]) == 0
    error_message = "client_cidr_blocks must be CIDR blocks such as 10.0.0.0/16."
  }
}

variable "client_security_group_ids" {
  description = "Security groups of cairn's query servers and writers, allowed to reach the brokers' SASL ports."
  type        = list(string)
  default     = []

  validation {
    condition     = length([for s in var.client_security_group_ids : s if !can(regex("^sg-[0-9a-f]+$", s))]) == 0
    error_message = "client_security_group_ids must be security group ids such as sg-0123abcd."
  }
}

variable "scram_username" {
  description = "SASL/SCRAM user of cairn (CAIRN_KAFKA_SASL_USERNAME)."
  type        = string
  default     = "cairn"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,64}$", var.scram_username))
    error_message = "scram_username must be 1 to 64 letters, digits, dots, underscores or hyphens."
  }
}

variable "scram_password" {
  description = "SASL/SCRAM password of cairn, stored in the Secrets Manager secret; give cairn the same value in CAIRN_KAFKA_SASL_PASSWORD_FILE."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.scram_password) >= 16
    error_message = "scram_password must be at least 16 characters."
  }
}

variable "iam_auth" {
  description = "Also enable IAM access control (port 9098): needed by MSK Replicator and by CAIRN_KAFKA_SASL_MECHANISM=AWS_MSK_IAM."
  type        = bool
  default     = false
}

variable "multi_vpc_iam" {
  description = "Turn on multi-VPC private connectivity with IAM authentication, which a cross-region MSK Replicator needs on its source cluster. Needs iam_auth."
  type        = bool
  default     = false
}
