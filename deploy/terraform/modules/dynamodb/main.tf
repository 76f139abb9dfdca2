locals {
  tags       = merge(var.tags, { cairn_environment = var.environment })
  autoscaled = var.capacity_mode == "autoscaled"
  global     = length(var.replica_regions) > 0

  billing_mode   = var.capacity_mode == "on_demand" ? "PAY_PER_REQUEST" : "PROVISIONED"
  read_capacity  = var.capacity_mode == "on_demand" ? null : var.read_capacity
  write_capacity = var.capacity_mode == "on_demand" ? null : var.write_capacity

  # Global Tables replicate through the table's stream of both images.
  stream_enabled   = local.global
  stream_view_type = local.global ? "NEW_AND_OLD_IMAGES" : null

  # The attribute the store writes each item's expiry to, in seconds since
  # the Unix epoch (internal/store/dynamo).
  ttl_attribute = "_ttl"
}

# Two resources, one of which exists: the autoscaled table leaves its
# capacities to Application Auto Scaling (ignore_changes), the other keeps
# them as written. Changing capacity_mode to or from autoscaled moves the
# table between them: `terraform state mv` first (README.md), or Terraform
# plans to replace the table.
resource "aws_dynamodb_table" "this" {
  count = local.autoscaled ? 0 : 1

  name                        = var.table_name
  billing_mode                = local.billing_mode
  read_capacity               = local.read_capacity
  write_capacity              = local.write_capacity
  hash_key                    = "pk"
  range_key                   = "sk"
  stream_enabled              = local.stream_enabled
  stream_view_type            = local.stream_view_type
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  ttl {
    attribute_name = local.ttl_attribute
    enabled        = true
  }

  dynamic "replica" {
    for_each = var.replica_regions
    content {
      region_name            = replica.value
      point_in_time_recovery = var.point_in_time_recovery
      propagate_tags         = true
    }
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  tags = local.tags
}

resource "aws_dynamodb_table" "autoscaled" {
  count = local.autoscaled ? 1 : 0

  name                        = var.table_name
  billing_mode                = local.billing_mode
  read_capacity               = local.read_capacity
  write_capacity              = local.write_capacity
  hash_key                    = "pk"
  range_key                   = "sk"
  stream_enabled              = local.stream_enabled
  stream_view_type            = local.stream_view_type
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  ttl {
    attribute_name = local.ttl_attribute
    enabled        = true
  }

  dynamic "replica" {
    for_each = var.replica_regions
    content {
      region_name            = replica.value
      point_in_time_recovery = var.point_in_time_recovery
      propagate_tags         = true
    }
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  tags = local.tags

  lifecycle {
    ignore_changes = [read_capacity, write_capacity]
  }
}

locals {
  table = one(concat(aws_dynamodb_table.this, aws_dynamodb_table.autoscaled))
}

# Capacity of the table in this provider's region; each replica region
# gets its own with the autoscaling submodule and a provider there.
module "autoscaling" {
  source = "./autoscaling"
  count  = local.autoscaled ? 1 : 0

  table_name         = local.table.name
  target_utilization = var.autoscaling_target_utilization
  read_min           = var.autoscaling_read_min
  read_max           = var.autoscaling_read_max
  write_min          = var.autoscaling_write_min
  write_max          = var.autoscaling_write_max
}
