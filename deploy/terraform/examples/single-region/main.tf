data "aws_caller_identity" "current" {}

locals {
  suffix = var.environment == "production" ? "" : "-${var.environment}"
}

module "msk" {
  source = "../../modules/msk"

  name                       = "cairn-msk${local.suffix}"
  environment                = var.environment
  vpc_id                     = var.vpc_id
  private_subnet_ids         = var.private_subnet_ids
  client_cidr_blocks         = var.client_cidr_blocks
  broker_count               = var.broker_count
  volume_size                = var.broker_volume_size
  log_retention_hours        = var.log_retention_hours
  default_replication_factor = var.default_replication_factor
  scram_password             = var.scram_password
}

module "dynamodb" {
  source = "../../modules/dynamodb"

  table_name            = "cairn-online-store${local.suffix}"
  environment           = var.environment
  capacity_mode         = var.capacity_mode
  read_capacity         = var.read_capacity
  write_capacity        = var.write_capacity
  autoscaling_read_min  = var.autoscaling_read_min
  autoscaling_read_max  = var.autoscaling_read_max
  autoscaling_write_min = var.autoscaling_write_min
  autoscaling_write_max = var.autoscaling_write_max
}

module "iam" {
  source = "../../modules/iam"

  name               = "cairn${local.suffix}"
  account_id         = data.aws_caller_identity.current.account_id
  region             = var.region
  table_name         = module.dynamodb.table_name
  kafka_cluster_arns = [module.msk.cluster_arn]
}
