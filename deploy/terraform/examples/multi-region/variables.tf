variable "primary_region" {
  description = "Region of the primary cluster and the table there."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.primary_region))
    error_message = "primary_region must be an AWS region such as us-east-1."
  }
}

variable "secondary_region" {
  description = "Region of the secondary cluster and the table replica there."
  type        = string
  default     = "us-west-2"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.secondary_region))
    error_message = "secondary_region must be an AWS region such as us-east-1."
  }
}

variable "environment" {
  description = "cairn_environment tag, and suffix of the resource names unless it is production."
  type        = string
  default     = "production"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.environment))
    error_message = "environment must be 1 to 20 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "primary_vpc_id" {
  description = "Primary region: VPC of the brokers."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.primary_vpc_id))
    error_message = "primary_vpc_id must be a VPC id such as vpc-0123abcd."
  }
}

variable "secondary_vpc_id" {
  description = "Secondary region: VPC of the brokers."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.secondary_vpc_id))
    error_message = "secondary_vpc_id must be a VPC id such as vpc-0123abcd."
  }
}

variable "primary_private_subnet_ids" {
  description = "Primary region: Private subnets of the brokers, one per availability zone."
  type        = list(string)

  validation {
    condition     = length(var.primary_private_subnet_ids) >= 2 && length([for s in var.primary_private_subnet_ids : s if !can(regex("^subnet-[0-9a-f]+$", s))]) == 0
    error_message = "primary_private_subnet_ids must be at least 2 subnet ids such as subnet-0123abcd."
  }
}

variable "secondary_private_subnet_ids" {
  description = "Secondary region: Private subnets of the brokers, one per availability zone."
  type        = list(string)

  validation {
    condition     = length(var.secondary_private_subnet_ids) >= 2 && length([for s in var.secondary_private_subnet_ids : s if !can(regex("^subnet-[0-9a-f]+$", s))]) == 0
    error_message = "secondary_private_subnet_ids must be at least 2 subnet ids such as subnet-0123abcd."
  }
}

variable "primary_client_cidr_blocks" {
  description = "Primary region: CIDR blocks of cairn's query servers and writers."
  type        = list(string)

  validation {
    condition     = length(var.primary_client_cidr_blocks) >= 1 && length([for c in var.primary_client_cidr_blocks : c if !can(regex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$", c))]) == 0
    error_message = "primary_client_cidr_blocks must be one or more CIDR blocks such as 10.0.0.0/16."
  }
}

variable "secondary_client_cidr_blocks" {
  description = "Secondary region: CIDR blocks of cairn's query servers and writers."
  type        = list(string)

  validation {
    condition     = length(var.secondary_client_cidr_blocks) >= 1 && length([for c in var.secondary_client_cidr_blocks : c if !can(regex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$", c))]) == 0
    error_message = "secondary_client_cidr_blocks must be one or more CIDR blocks such as 10.0.0.0/16."
  }
}

variable "scram_password" {
  description = "SASL/SCRAM password of cairn; give it to cairn in CAIRN_KAFKA_SASL_PASSWORD_FILE."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.scram_password) >= 16
    error_message = "scram_password must be at least 16 characters."
  }
}

variable "broker_volume_size" {
  description = "EBS GiB per broker (cairn size prints it for your retention)."
  type        = number
  default     = 500

  validation {
    condition     = var.broker_volume_size >= 1 && var.broker_volume_size <= 16384
    error_message = "broker_volume_size must be from 1 to 16384 GiB."
  }
}

variable "capacity_mode" {
  description = "provisioned, on_demand or autoscaled (cairn size recommends one)."
  type        = string
  default     = "autoscaled"

  validation {
    condition     = contains(["provisioned", "on_demand", "autoscaled"], var.capacity_mode)
    error_message = "capacity_mode must be provisioned, on_demand or autoscaled."
  }
}

variable "read_capacity" {
  description = "Provisioned read units per region (provisioned), or the starting ones (autoscaled)."
  type        = number
  default     = 1000

  validation {
    condition     = var.read_capacity >= 1
    error_message = "read_capacity must be at least 1."
  }
}

variable "write_capacity" {
  description = "Provisioned write units (provisioned), or the starting ones (autoscaled)."
  type        = number
  default     = 500

  validation {
    condition     = var.write_capacity >= 1
    error_message = "write_capacity must be at least 1."
  }
}

variable "autoscaling_read_min" {
  description = "Floor of read capacity units (autoscaled), in each region: cover the peak-to-trough swing at the target utilization (cairn size prints it)."
  type        = number
  default     = 500

  validation {
    condition     = var.autoscaling_read_min >= 1 && floor(var.autoscaling_read_min) == var.autoscaling_read_min
    error_message = "autoscaling_read_min must be a whole number of read capacity units, at least 1."
  }
}

variable "autoscaling_read_max" {
  description = "Ceiling of read capacity units (autoscaled), in each region: the most the table may cost (cairn size prints it)."
  type        = number
  default     = 5000

  validation {
    condition     = var.autoscaling_read_max >= 1 && floor(var.autoscaling_read_max) == var.autoscaling_read_max
    error_message = "autoscaling_read_max must be a whole number of read capacity units, at least 1."
  }
}

variable "autoscaling_write_min" {
  description = "Floor of write capacity units (autoscaled), in each region: cover the peak-to-trough swing at the target utilization (cairn size prints it)."
  type        = number
  default     = 250

  validation {
    condition     = var.autoscaling_write_min >= 1 && floor(var.autoscaling_write_min) == var.autoscaling_write_min
    error_message = "autoscaling_write_min must be a whole number of write capacity units, at least 1."
  }
}

variable "autoscaling_write_max" {
  description = "Ceiling of write capacity units (autoscaled), in each region: the most the table may cost (cairn size prints it)."
  type        = number
  default     = 2500

  validation {
    condition     = var.autoscaling_write_max >= 1 && floor(var.autoscaling_write_max) == var.autoscaling_write_max
    error_message = "autoscaling_write_max must be a whole number of write capacity units, at least 1."
  }
}

variable "log_retention_hours" {
  description = "Broker setting log.retention.hours in both clusters, the retention window cairn size sizes broker_volume_size for."
  type        = number
  default     = 168

  validation {
    condition     = var.log_retention_hours >= 1 && floor(var.log_retention_hours) == var.log_retention_hours
    error_message = "log_retention_hours must be a whole number of hours, at least 1."
  }
}

variable "broker_count" {
  description = "Broker nodes per cluster: a multiple of the number of subnets, at least 3 (cairn size --brokers-count)."
  type        = number
  default     = 3

  validation {
    condition     = var.broker_count >= 3 && floor(var.broker_count) == var.broker_count
    error_message = "broker_count must be a whole number of at least 3."
  }
}

variable "default_replication_factor" {
  description = "Broker setting default.replication.factor in both clusters (cairn size --replication-factor); at most broker_count."
  type        = number
  default     = 3

  validation {
    condition     = var.default_replication_factor >= 1 && floor(var.default_replication_factor) == var.default_replication_factor
    error_message = "default_replication_factor must be a whole number, at least 1."
  }
}
