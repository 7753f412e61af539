"""The `uploads` dynamic partitions: one per object under `uploads/{asset_id}/{filename}`."""

from dagster import DynamicPartitionsDefinition

uploads_partitions = DynamicPartitionsDefinition(name="uploads")
