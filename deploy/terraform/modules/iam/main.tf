locals {
  table_arns = [
    for r in concat([var.region], var.replica_regions) :
    "arn:${var.partition}:dynamodb:${r}:${var.account_id}:table/${var.table_name}"
  ]

  cluster_arns = var.kafka_cluster_arns

  # topic/CLUSTER_NAME/CLUSTER_UUID/TOPIC and group/CLUSTER_NAME/CLUSTER_UUID/GROUP.
  persist_topic_arns     = [for a in var.kafka_cluster_arns : "${replace(a, ":cluster/", ":topic/")}/${var.persist_topic}"]
  metrics_topic_arns     = [for a in var.kafka_cluster_arns : "${replace(a, ":cluster/", ":topic/")}/${var.metrics_topic}"]
  dead_letter_topic_arns = [for a in var.kafka_cluster_arns : "${replace(a, ":cluster/", ":topic/")}/${var.dead_letter_topic}"]
  all_topic_arns         = concat(local.persist_topic_arns, local.metrics_topic_arns, local.dead_letter_topic_arns)
  writer_group_arns      = [for a in var.kafka_cluster_arns : "${replace(a, ":cluster/", ":group/")}/${var.writer_group}"]
  metrics_group_arns     = [for a in var.kafka_cluster_arns : "${replace(a, ":cluster/", ":group/")}/${var.metrics_group}"]
  bloom_group_arns       = [for a in var.kafka_cluster_arns : "${replace(a, ":cluster/", ":group/")}/${var.bloom_group_prefix}*"]
}

# The DynamoDB actions the store calls on every open and every request
# (internal/store/dynamo): the table is described at open, the feature-id
# mapping is read with Query and GetItem and extended with PutItem and
# UpdateItem, entities are read with BatchGetItem and written with
# UpdateItem and TransactWriteItems, and Bloom filters are built with Scan.
# No index exists, so no index ARN is named.
data "aws_iam_policy_document" "serve" {
  statement {
    sid = "DynamoDBRuntime"
    actions = [
      "dynamodb:BatchGetItem",
      "dynamodb:DescribeTable",
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:Query",
      "dynamodb:Scan",
      "dynamodb:TransactWriteItems",
      "dynamodb:UpdateItem",
    ]
    resources = local.table_arns
  }

  statement {
    sid       = "KafkaConnect"
    actions   = ["kafka-cluster:Connect"]
    resources = local.cluster_arns
  }

  statement {
    sid       = "KafkaProducePersistAndMetrics"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
    resources = concat(local.persist_topic_arns, local.metrics_topic_arns)
  }

  statement {
    sid       = "KafkaBloomReadPersist"
    actions   = ["kafka-cluster:ReadData"]
    resources = local.persist_topic_arns
  }

  statement {
    sid       = "KafkaBloomTrackerGroups"
    actions   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup", "kafka-cluster:DeleteGroup"]
    resources = local.bloom_group_arns
  }

  statement {
    sid       = "KafkaBloomWriterPositions"
    actions   = ["kafka-cluster:DescribeGroup"]
    resources = local.writer_group_arns
  }
}

data "aws_iam_policy_document" "write" {
  statement {
    sid = "DynamoDBRuntime"
    actions = [
      "dynamodb:BatchGetItem",
      "dynamodb:DescribeTable",
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:Query",
      "dynamodb:Scan",
      "dynamodb:TransactWriteItems",
      "dynamodb:UpdateItem",
    ]
    resources = local.table_arns
  }

  # The writer's client produces dead letters with the idempotent producer.
  statement {
    sid       = "KafkaConnect"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"]
    resources = local.cluster_arns
  }

  statement {
    sid       = "KafkaConsumePersist"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
    resources = local.persist_topic_arns
  }

  statement {
    sid       = "KafkaProduceDeadLetters"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
    resources = local.dead_letter_topic_arns
  }

  statement {
    sid       = "KafkaWriterGroup"
    actions   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
    resources = local.writer_group_arns
  }

  statement {
    sid       = "KafkaBloomBarrier"
    actions   = ["kafka-cluster:DescribeGroup"]
    resources = local.bloom_group_arns
  }

  # The metrics consumer: query servers' per-interval records, rolled up
  # into the online store (`cairn write --metrics=false` does without).
  statement {
    sid       = "KafkaConsumeMetrics"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
    resources = local.metrics_topic_arns
  }

  statement {
    sid       = "KafkaMetricsGroup"
    actions   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
    resources = local.metrics_group_arns
  }
}

# Setup: `cairn topics create`, and a store allowed to create its table
# (DYNAMODB_CREATE_TABLES_IF_NOT_EXISTS=true, which Terraform-made tables do
# not need).
data "aws_iam_policy_document" "admin" {
  statement {
    sid       = "DynamoDBSetup"
    actions   = ["dynamodb:CreateTable", "dynamodb:UpdateTimeToLive"]
    resources = local.table_arns
  }

  statement {
    sid       = "KafkaConnect"
    actions   = ["kafka-cluster:Connect"]
    resources = local.cluster_arns
  }

  statement {
    sid = "KafkaTopics"
    actions = [
      "kafka-cluster:AlterTopic",
      "kafka-cluster:AlterTopicDynamicConfiguration",
      "kafka-cluster:CreateTopic",
      "kafka-cluster:DescribeTopic",
      "kafka-cluster:DescribeTopicDynamicConfiguration",
    ]
    resources = local.all_topic_arns
  }

  # `cairn status`: the writers' group, its members and its lag.
  statement {
    sid       = "KafkaStatusWriterGroup"
    actions   = ["kafka-cluster:DescribeGroup"]
    resources = local.writer_group_arns
  }
}

resource "aws_iam_policy" "serve" {
  name        = "${var.name}-serve"
  description = "cairn serve: read the online store, produce to the persistence and metrics topics, track Bloom filters."
  policy      = data.aws_iam_policy_document.serve.json
}

resource "aws_iam_policy" "write" {
  name        = "${var.name}-write"
  description = "cairn write: consume the persistence topic in the writers' group, write the online store, produce dead letters."
  policy      = data.aws_iam_policy_document.write.json
}

resource "aws_iam_policy" "admin" {
  name        = "${var.name}-admin"
  description = "cairn topics create, and creating the online store table."
  policy      = data.aws_iam_policy_document.admin.json
}
