variable "table_name" {
  description = "Table (or Global Tables replica, in this provider's region) whose capacity follows its use."
  type        = string
}

variable "target_utilization" {
  description = "Percent of provisioned capacity the policies keep in use; lower it (50 to 60) for sharp spikes, since scaling up lags by minutes."
  type        = number
  default     = 70

  validation {
    condition     = var.target_utilization >= 20 && var.target_utilization <= 90
    error_message = "target_utilization must be a percentage from 20 to 90."
  }
}

variable "scale_in_cooldown" {
  description = "Seconds after a scale-in before another scale-in."
  type        = number
  default     = 60

  validation {
    condition     = var.scale_in_cooldown >= 0
    error_message = "scale_in_cooldown must be a number of seconds, at least 0."
  }
}

variable "scale_out_cooldown" {
  description = "Seconds after a scale-out before another scale-out."
  type        = number
  default     = 60

  validation {
    condition     = var.scale_out_cooldown >= 0
    error_message = "scale_out_cooldown must be a number of seconds, at least 0."
  }
}

variable "read_min" {
  description = "Floor of read capacity units: cover the peak-to-trough swing, so that the reactive scale-up never starts from too low."
  type        = number
  default     = 500

  validation {
    condition     = var.read_min >= 1 && floor(var.read_min) == var.read_min
    error_message = "read_min must be a whole number of read units, at least 1."
  }
}

variable "read_max" {
  description = "Ceiling of read capacity units: the most the table may cost."
  type        = number
  default     = 5000

  validation {
    condition     = var.read_max >= 1 && floor(var.read_max) == var.read_max
    error_message = "read_max must be a whole number of read units, at least 1."
  }
}

variable "write_min" {
  description = "Floor of write capacity units."
  type        = number
  default     = 250

  validation {
    condition     = var.write_min >= 1 && floor(var.write_min) == var.write_min
    error_message = "write_min must be a whole number of write units, at least 1."
  }
}

variable "write_max" {
  description = "Ceiling of write capacity units."
  type        = number
  default     = 2500

  validation {
    condition     = var.write_max >= 1 && floor(var.write_max) == var.write_max
    error_message = "write_max must be a whole number of write units, at least 1."
  }
}
