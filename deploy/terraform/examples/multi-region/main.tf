data "aws_caller_identity" "current" {
  provider = aws.primary
}

locals {
  suffix = var.environment == "production" ? "" : "-${var.environment}"
}

module "msk" {
  source = "../../modules/msk-replicated"
  providers = {
    aws.primary   = aws.primary
    aws.secondary = aws.secondary
  }

  name                         = "cairn-msk${local.suffix}"
  environment                  = var.environment
  broker_count                 = var.broker_count
  volume_size                  = var.broker_volume_size
  log_retention_hours          = var.log_retention_hours
  default_replication_factor   = var.default_replication_factor
  primary_vpc_id               = var.primary_vpc_id
  primary_private_subnet_ids   = var.primary_private_subnet_ids
  primary_client_cidr_blocks   = var.primary_client_cidr_blocks
  secondary_vpc_id             = var.secondary_vpc_id
  secondary_private_subnet_ids = var.secondary_private_subnet_ids
  secondary_client_cidr_blocks = var.secondary_client_cidr_blocks
  scram_password               = var.scram_password
}

# One table in the primary region with a Global Tables replica in the
# secondary.
module "dynamodb" {
  source    = "../../modules/dynamodb"
  providers = { aws = aws.primary }

  table_name            = "cairn-online-store${local.suffix}"
  environment           = var.environment
  capacity_mode         = var.capacity_mode
  read_capacity         = var.read_capacity
  write_capacity        = var.write_capacity
  autoscaling_read_min  = var.autoscaling_read_min
  autoscaling_read_max  = var.autoscaling_read_max
  autoscaling_write_min = var.autoscaling_write_min
  autoscaling_write_max = var.autoscaling_write_max
  replica_regions       = [var.secondary_region]
}

# Autoscaling is per region: the replica's capacity follows the secondary
# region's own traffic.
module "dynamodb_secondary_autoscaling" {
  source    = "../../modules/dynamodb/autoscaling"
  count     = var.capacity_mode == "autoscaled" ? 1 : 0
  providers = { aws = aws.secondary }

  table_name = module.dynamodb.table_name
  read_min   = var.autoscaling_read_min
  read_max   = var.autoscaling_read_max
  write_min  = var.autoscaling_write_min
  write_max  = var.autoscaling_write_max
}

module "iam" {
  source    = "../../modules/iam"
  providers = { aws = aws.primary }

  name               = "cairn${local.suffix}"
  account_id         = data.aws_caller_identity.current.account_id
  region             = var.primary_region
  replica_regions    = [var.secondary_region]
  table_name         = module.dynamodb.table_name
  kafka_cluster_arns = [module.msk.primary_cluster_arn, module.msk.secondary_cluster_arn]
}
