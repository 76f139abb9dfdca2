locals {
  tags = merge(var.tags, { cairn_environment = var.environment })

  # Ports cairn's clients reach: 9096 is SASL/SCRAM over TLS, 9098 IAM over TLS.
  client_ports = var.iam_auth ? [9096, 9098] : [9096]

  client_rules = merge(
    { for pair in setproduct(local.client_ports, var.client_cidr_blocks) : "${pair[0]}-${pair[1]}" => { port = pair[0], cidr = pair[1], sg = null } },
    { for pair in setproduct(local.client_ports, var.client_security_group_ids) : "${pair[0]}-${pair[1]}" => { port = pair[0], cidr = null, sg = pair[1] } },
  )
}

resource "aws_msk_configuration" "this" {
  name           = "${var.name}-config"
  kafka_versions = [var.kafka_version]

  server_properties = <<-PROPERTIES
    auto.create.topics.enable=${var.auto_create_topics_enable}
    log.retention.hours=${var.log_retention_hours}
    min.insync.replicas=${var.min_insync_replicas}
    default.replication.factor=${var.default_replication_factor}
    num.partitions=${var.num_partitions}
  PROPERTIES
}

resource "aws_security_group" "msk" {
  name        = "${var.name}-brokers"
  description = "Brokers of ${var.name}"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "client" {
  for_each = local.client_rules

  security_group_id            = aws_security_group.msk.id
  description                  = "cairn clients to the brokers' SASL port ${each.value.port}"
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  cidr_ipv4                    = each.value.cidr
  referenced_security_group_id = each.value.sg
  tags                         = local.tags
}

# Brokers, and MSK Replicator's network interfaces that share this group,
# reach each other's IAM port.
resource "aws_vpc_security_group_ingress_rule" "self_iam" {
  count = var.iam_auth ? 1 : 0

  security_group_id            = aws_security_group.msk.id
  description                  = "members of this group to the brokers' IAM port"
  ip_protocol                  = "tcp"
  from_port                    = 9098
  to_port                      = 9098
  referenced_security_group_id = aws_security_group.msk.id
  tags                         = local.tags
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.msk.id
  description       = "brokers to anywhere (replication between brokers, AWS endpoints)"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
  tags              = local.tags
}

resource "aws_msk_cluster" "this" {
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = var.broker_count

  broker_node_group_info {
    instance_type   = var.instance_type
    client_subnets  = var.private_subnet_ids
    security_groups = [aws_security_group.msk.id]

    storage_info {
      ebs_storage_info {
        volume_size = var.volume_size
      }
    }

    dynamic "connectivity_info" {
      for_each = var.multi_vpc_iam ? [1] : []
      content {
        vpc_connectivity {
          client_authentication {
            sasl {
              iam = true
            }
          }
        }
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  client_authentication {
    sasl {
      scram = true
      iam   = var.iam_auth
    }
  }

  encryption_info {
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.iam_auth || !var.multi_vpc_iam
      error_message = "multi_vpc_iam needs iam_auth: multi-VPC connectivity here authenticates with IAM."
    }
  }
}

# MSK reads SCRAM credentials from Secrets Manager secrets whose names
# start with AmazonMSK_ and that are encrypted with a customer managed key
# (the default aws/secretsmanager key is refused).
resource "aws_kms_key" "scram" {
  description         = "SCRAM credentials of ${var.name}"
  enable_key_rotation = true
  tags                = local.tags
}

resource "aws_secretsmanager_secret" "scram" {
  name       = "AmazonMSK_${var.name}_${var.scram_username}"
  kms_key_id = aws_kms_key.scram.key_id
  tags       = local.tags
}

resource "aws_secretsmanager_secret_version" "scram" {
  secret_id     = aws_secretsmanager_secret.scram.id
  secret_string = jsonencode({ username = var.scram_username, password = var.scram_password })
}

# The association attaches this policy itself; declaring it keeps plans
# free of a perpetual diff.
data "aws_iam_policy_document" "scram_secret" {
  statement {
    sid       = "AWSKafkaResourcePolicy"
    effect    = "Allow"
    actions   = ["secretsmanager:getSecretValue"]
    resources = [aws_secretsmanager_secret.scram.arn]

    principals {
      type        = "Service"
      identifiers = ["kafka.amazonaws.com"]
    }
  }
}

resource "aws_secretsmanager_secret_policy" "scram" {
  secret_arn = aws_secretsmanager_secret.scram.arn
  policy     = data.aws_iam_policy_document.scram_secret.json
}

resource "aws_msk_scram_secret_association" "this" {
  cluster_arn     = aws_msk_cluster.this.arn
  secret_arn_list = [aws_secretsmanager_secret.scram.arn]

  depends_on = [aws_secretsmanager_secret_version.scram]
}
