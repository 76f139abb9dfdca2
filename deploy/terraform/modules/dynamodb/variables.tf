variable "table_name" {
  description = "Name of cairn's table (CAIRN_ONLINE_STORE=dynamodb:///NAME?region=REGION)."
  type        = string
  default     = "cairn-online-store"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,255}$", var.table_name))
    error_message = "table_name must be 3 to 255 letters, digits, underscores, dots or hyphens."
  }
}

variable "environment" {
  description = "Value of the cairn_environment tag."
  type        = string
  default     = "production"
}

variable "tags" {
  description = "Extra tags on the table and its replicas."
  type        = map(string)
  default     = {}
}

variable "capacity_mode" {
  description = "provisioned: fixed read_capacity and write_capacity; on_demand: PAY_PER_REQUEST, no capacities (about 7x the unit price, absorbs any spike); autoscaled: provisioned capacity that Application Auto Scaling keeps at the target utilization between the floors and ceilings."
  type        = string
  default     = "autoscaled"

  validation {
    condition     = contains(["provisioned", "on_demand", "autoscaled"], var.capacity_mode)
    error_message = "capacity_mode must be provisioned, on_demand or autoscaled."
  }
}

variable "read_capacity" {
  description = "Read capacity units of the provisioned mode, per region; the starting capacity of the autoscaled mode."
  type        = number
  default     = 1000

  validation {
    condition     = var.read_capacity >= 1 && floor(var.read_capacity) == var.read_capacity
    error_message = "read_capacity must be a whole number of read units, at least 1."
  }
}

variable "write_capacity" {
  description = "Write capacity units of the provisioned mode, per region; the starting capacity of the autoscaled mode."
  type        = number
  default     = 500

  validation {
    condition     = var.write_capacity >= 1 && floor(var.write_capacity) == var.write_capacity
    error_message = "write_capacity must be a whole number of write units, at least 1."
  }
}

variable "autoscaling_target_utilization" {
  description = "autoscaled: percent of capacity the policies keep in use."
  type        = number
  default     = 70

  validation {
    condition     = var.autoscaling_target_utilization >= 20 && var.autoscaling_target_utilization <= 90
    error_message = "autoscaling_target_utilization must be a percentage from 20 to 90."
  }
}

variable "autoscaling_read_min" {
  description = "autoscaled: floor of read capacity units."
  type        = number
  default     = 500

  validation {
    condition     = var.autoscaling_read_min >= 1 && floor(var.autoscaling_read_min) == var.autoscaling_read_min
    error_message = "autoscaling_read_min must be a whole number of read capacity units, at least 1."
  }
}

variable "autoscaling_read_max" {
  description = "autoscaled: ceiling of read capacity units."
  type        = number
  default     = 5000

  validation {
    condition     = var.autoscaling_read_max >= 1 && floor(var.autoscaling_read_max) == var.autoscaling_read_max
    error_message = "autoscaling_read_max must be a whole number of read capacity units, at least 1."
  }
}

variable "autoscaling_write_min" {
  description = "autoscaled: floor of write capacity units."
  type        = number
  default     = 250

  validation {
    condition     = var.autoscaling_write_min >= 1 && floor(var.autoscaling_write_min) == var.autoscaling_write_min
    error_message = "autoscaling_write_min must be a whole number of write capacity units, at least 1."
  }
}

variable "autoscaling_write_max" {
  description = "autoscaled: ceiling of write capacity units."
  type        = number
  default     = 2500

  validation {
    condition     = var.autoscaling_write_max >= 1 && floor(var.autoscaling_write_max) == var.autoscaling_write_max
    error_message = "autoscaling_write_max must be a whole number of write capacity units, at least 1."
  }
}

variable "replica_regions" {
  description = "Global Tables: regions holding a replica besides the provider's own region. Not empty turns on the stream Global Tables need; scale each replica's capacity with the autoscaling submodule in its region."
  type        = list(string)
  default     = []

  validation {
    condition     = length([for r in var.replica_regions : r if !can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", r))]) == 0 && length(distinct(var.replica_regions)) == length(var.replica_regions)
    error_message = "replica_regions must be distinct AWS regions such as us-west-2."
  }
}

variable "kms_key_arn" {
  description = "Customer managed KMS key of server-side encryption; null uses the AWS managed key (aws/dynamodb). A table with replicas needs a key per region, so leave it null for Global Tables unless every replica gets one."
  type        = string
  default     = null
}

variable "point_in_time_recovery" {
  description = "Continuous backups with point-in-time restore, on the table and each replica."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse DeleteTable while set."
  type        = bool
  default     = true
}
