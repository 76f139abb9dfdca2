locals {
  dimensions = {
    read = {
      min    = var.read_min
      max    = var.read_max
      unit   = "ReadCapacityUnits"
      metric = "DynamoDBReadCapacityUtilization"
    }
    write = {
      min    = var.write_min
      max    = var.write_max
      unit   = "WriteCapacityUnits"
      metric = "DynamoDBWriteCapacityUtilization"
    }
  }
}

resource "aws_appautoscaling_target" "this" {
  for_each = local.dimensions

  min_capacity       = each.value.min
  max_capacity       = each.value.max
  resource_id        = "table/${var.table_name}"
  scalable_dimension = "dynamodb:table:${each.value.unit}"
  service_namespace  = "dynamodb"

  lifecycle {
    precondition {
      condition     = each.value.min <= each.value.max
      error_message = "The ${each.key} floor must not exceed its ceiling."
    }
  }
}

resource "aws_appautoscaling_policy" "this" {
  for_each = local.dimensions

  name               = "${var.table_name}-${each.key}-autoscaling"
  policy_type        = "TargetTrackingScaling"
  resource_id        = aws_appautoscaling_target.this[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.this[each.key].scalable_dimension
  service_namespace  = aws_appautoscaling_target.this[each.key].service_namespace

  target_tracking_scaling_policy_configuration {
    predefined_metric_specification {
      predefined_metric_type = each.value.metric
    }
    target_value       = var.target_utilization
    scale_in_cooldown  = var.scale_in_cooldown
    scale_out_cooldown = var.scale_out_cooldown
  }
}
