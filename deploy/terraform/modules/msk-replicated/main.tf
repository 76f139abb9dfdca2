locals {
  tags = merge(var.tags, { cairn_environment = var.environment })
}

# MSK Replicator reaches both clusters with IAM access control, so both
# enable it next to SCRAM; the source of a cross-region replicator also
# needs multi-VPC private connectivity and a cluster policy letting the
# service connect.
module "primary" {
  source    = "../msk"
  providers = { aws = aws.primary }

  name                       = "${var.name}-primary"
  environment                = var.environment
  tags                       = var.tags
  kafka_version              = var.kafka_version
  broker_count               = var.broker_count
  instance_type              = var.instance_type
  volume_size                = var.volume_size
  log_retention_hours        = var.log_retention_hours
  default_replication_factor = var.default_replication_factor
  vpc_id                     = var.primary_vpc_id
  private_subnet_ids         = var.primary_private_subnet_ids
  client_cidr_blocks         = var.primary_client_cidr_blocks
  scram_username             = var.scram_username
  scram_password             = var.scram_password
  iam_auth                   = true
  multi_vpc_iam              = var.primary_multi_vpc_iam
}

module "secondary" {
  source    = "../msk"
  providers = { aws = aws.secondary }

  name                       = "${var.name}-secondary"
  environment                = var.environment
  tags                       = var.tags
  kafka_version              = var.kafka_version
  broker_count               = var.broker_count
  instance_type              = var.instance_type
  volume_size                = var.volume_size
  log_retention_hours        = var.log_retention_hours
  default_replication_factor = var.default_replication_factor
  vpc_id                     = var.secondary_vpc_id
  private_subnet_ids         = var.secondary_private_subnet_ids
  client_cidr_blocks         = var.secondary_client_cidr_blocks
  scram_username             = var.scram_username
  scram_password             = var.scram_password
  iam_auth                   = true
}

data "aws_iam_policy_document" "primary_cluster" {
  statement {
    sid       = "MSKReplicatorConnects"
    effect    = "Allow"
    actions   = ["kafka:CreateVpcConnection", "kafka:GetBootstrapBrokers", "kafka:DescribeClusterV2"]
    resources = [module.primary.cluster_arn]

    principals {
      type        = "Service"
      identifiers = ["kafka.amazonaws.com"]
    }
  }
}

resource "aws_msk_cluster_policy" "primary" {
  provider = aws.primary

  cluster_arn = module.primary.cluster_arn
  policy      = data.aws_iam_policy_document.primary_cluster.json
}

data "aws_iam_policy_document" "replicator_assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["kafka.amazonaws.com"]
    }
  }
}

locals {
  clusters = [module.primary.cluster_arn, module.secondary.cluster_arn]
  topics   = [for arn in local.clusters : "${replace(arn, ":cluster/", ":topic/")}/*"]
  groups   = [for arn in local.clusters : "${replace(arn, ":cluster/", ":group/")}/*"]
}

# What MSK Replicator documents its service execution role needs, on the
# two clusters only: it reads and describes the source, creates and writes
# topics on the target, and copies consumer group offsets.
data "aws_iam_policy_document" "replicator" {
  statement {
    sid       = "Clusters"
    effect    = "Allow"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:AlterCluster", "kafka-cluster:WriteDataIdempotently"]
    resources = local.clusters
  }

  statement {
    sid    = "Topics"
    effect = "Allow"
    actions = [
      "kafka-cluster:DescribeTopic",
      "kafka-cluster:CreateTopic",
      "kafka-cluster:AlterTopic",
      "kafka-cluster:ReadData",
      "kafka-cluster:WriteData",
      "kafka-cluster:DescribeTopicDynamicConfiguration",
      "kafka-cluster:AlterTopicDynamicConfiguration",
    ]
    resources = local.topics
  }

  statement {
    sid       = "Groups"
    effect    = "Allow"
    actions   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
    resources = local.groups
  }
}

resource "aws_iam_role" "replicator" {
  provider = aws.secondary

  name               = "${var.name}-replicator"
  assume_role_policy = data.aws_iam_policy_document.replicator_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "replicator" {
  provider = aws.secondary

  name   = "${var.name}-replicator"
  role   = aws_iam_role.replicator.id
  policy = data.aws_iam_policy_document.replicator.json
}

# A replicator lives in its target cluster's region.
resource "aws_msk_replicator" "this" {
  provider = aws.secondary

  replicator_name            = "${var.name}-replicator"
  description                = "cairn topics and groups from ${var.name}-primary to ${var.name}-secondary"
  service_execution_role_arn = aws_iam_role.replicator.arn

  kafka_cluster {
    amazon_msk_cluster {
      msk_cluster_arn = module.primary.cluster_arn
    }

    vpc_config {
      subnet_ids          = var.primary_private_subnet_ids
      security_groups_ids = [module.primary.security_group_id]
    }
  }

  kafka_cluster {
    amazon_msk_cluster {
      msk_cluster_arn = module.secondary.cluster_arn
    }

    vpc_config {
      subnet_ids          = var.secondary_private_subnet_ids
      security_groups_ids = [module.secondary.security_group_id]
    }
  }

  replication_info_list {
    source_kafka_cluster_arn = module.primary.cluster_arn
    target_kafka_cluster_arn = module.secondary.cluster_arn
    target_compression_type  = "NONE"

    topic_replication {
      topics_to_replicate                  = [".*"]
      detect_and_copy_new_topics           = true
      copy_topic_configurations            = true
      copy_access_control_lists_for_topics = true

      topic_name_configuration {
        type = var.topic_name_configuration
      }

      starting_position {
        type = var.starting_position
      }
    }

    consumer_group_replication {
      consumer_groups_to_replicate        = [".*"]
      detect_and_copy_new_consumer_groups = true
      synchronise_consumer_group_offsets  = true
    }
  }

  tags = local.tags

  depends_on = [aws_msk_cluster_policy.primary, aws_iam_role_policy.replicator]
}
