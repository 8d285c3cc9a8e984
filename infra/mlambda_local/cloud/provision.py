"""Create the template's tables, buckets, queues, topics and rules on the local endpoint.

Idempotent: after a restart the restored state already holds most of them, so "already
exists" is success and the configuration (TTL, versioning, attributes) is applied again.
A restart on the embedded moto skips provisioning altogether when nothing it depends on changed
(``fingerprint``: the resources' resolved properties) and every resource it made is still there
(``Inventory.names``): the restored state is what provisioning made last time, and creating
fifty things again to hear "already exists" was seconds of a restart.
``check_endpoint`` first makes sure a user-given endpoint can be used at all. S3 Lambda notifications are rewritten to internal SQS queues, because moto cannot run
Lambda code; the runner polls those queues and invokes the function with the S3 event.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any
from urllib.parse import urlsplit

import boto3
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from mlambda_local.cloud.errors import MlambdaLocalError, TemplateError
from mlambda_local.cloud.template import IntrinsicResolver, Template

logger = logging.getLogger("mlambda.local")

# Run by the local cloud itself rather than created on the endpoint.
RUNNER_TYPES = frozenset(
    {"AWS::Lambda::Function", "AWS::Lambda::EventSourceMapping", "AWS::Logs::SubscriptionFilter"}
)
# Nothing to create locally: IAM is not enforced, API Gateway is emulated by the HTTP server.
SKIPPED_TYPES = frozenset(
    {
        "AWS::IAM::Role",
        "AWS::IAM::Policy",
        "AWS::IAM::ManagedPolicy",
        "AWS::Lambda::Permission",
        "AWS::Lambda::LayerVersion",
        "AWS::Lambda::LayerVersionPermission",
        "AWS::Lambda::Version",
        "AWS::Lambda::Alias",
        "AWS::Lambda::EventInvokeConfig",
        "AWS::ApiGateway::RestApi",
        "AWS::ApiGateway::Deployment",
        "AWS::ApiGateway::Stage",
        "AWS::ApiGateway::Account",
        "AWS::ApiGateway::ApiKey",
        "AWS::ApiGateway::UsagePlanKey",
        "AWS::ApiGateway::DomainName",
        "AWS::ApiGateway::BasePathMapping",
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::TopicPolicy",
        "AWS::S3::BucketPolicy",
        "AWS::Logs::LogGroup",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
        "AWS::Events::Connection",
    }
)


@dataclass
class InventoryItem:
    """One resource of the template and what the local cloud made of it."""

    logical_id: str
    type: str
    status: str  # created | exists | skipped | runner | unsupported | disabled
    physical_name: str | None = None
    arn: str | None = None
    url: str | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class S3Route:
    """A bucket notification that the runner delivers: internal queue -> function."""

    bucket: str
    function_logical_id: str
    queue_name: str
    queue_url: str
    queue_arn: str


@dataclass
class Inventory:
    """Everything provisioned, plus the internal S3 routes the runner must poll."""

    items: dict[str, InventoryItem] = field(default_factory=dict)
    s3_routes: list[S3Route] = field(default_factory=list)

    def add(self, item: InventoryItem) -> None:
        self.items[item.logical_id] = item

    @property
    def warnings(self) -> list[str]:
        """One line per resource the local cloud does not know how to run."""
        return [
            f"{item.logical_id} ({item.type}): {item.note}"
            for item in self.items.values()
            if item.status == "unsupported"
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "resources": [item.as_dict() for item in self.items.values()],
            "s3_routes": [asdict(route) for route in self.s3_routes],
            "warnings": self.warnings,
        }

    def names(self) -> dict[str, set[str]]:
        """The physical names of what provisioning made, by resource type (internal queues included)."""
        names: dict[str, set[str]] = {}
        for item in self.items.values():
            if item.status in ("created", "exists") and item.physical_name:
                names.setdefault(item.type, set()).add(item.physical_name)
        for route in self.s3_routes:
            names.setdefault("AWS::SQS::Queue", set()).add(route.queue_name)
        return names

    @classmethod
    def from_dict(cls, document: dict[str, Any], queue_url: Callable[[str], str]) -> Inventory:
        """An inventory saved by ``as_dict``, as of a restart: what was created then exists now, and
        queue URLs are spelled for the endpoint in use (``queue_url``)."""
        inventory = cls()
        for entry in document["resources"]:
            item = InventoryItem(**entry)
            if item.status == "created":
                item.status = "exists"
            if item.type == "AWS::SQS::Queue" and item.physical_name and item.url:
                item.url = queue_url(item.physical_name)
            inventory.add(item)
        for entry in document["s3_routes"]:
            inventory.s3_routes.append(S3Route(**{**entry, "queue_url": queue_url(entry["queue_name"])}))
        return inventory


def _references(value: Any) -> set[str]:
    """Logical ids a (translated) property value refers to through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _references(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                target = item.split(".", 1)[0] if isinstance(item, str) else item[0]
                found.add(str(target))
            elif key == "Fn::Sub":
                text = item[0] if isinstance(item, list) else item
                if isinstance(text, str):
                    for name in re.findall(r"\$\{([^!][^}.]*)", text):
                        found.add(name)
                found |= _references(item)
            else:
                found |= _references(item)
    return found


def dependency_order(template: Template) -> list[str]:
    """Logical ids so that every resource comes after those it references (DLQs before their queues)."""
    resources = template.resources
    graph: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        depends = resource.get("DependsOn") or []
        depends = [depends] if isinstance(depends, str) else list(depends)
        references = _references(resource.get("Properties") or {}) | set(depends)
        graph[logical_id] = {name for name in references if name in resources and name != logical_id}
    try:
        return list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise TemplateError(f"circular references between resources: {exc.args[1]}") from exc


ENDPOINT_CHECK_TIMEOUT_SECONDS = 3.0
PROVISIONING_VERSION = 1  # bumped when what provisioning makes of the same template changes


def check_endpoint(endpoint_url: str, session: boto3.session.Session) -> None:
    """Fail at once, saying why, when ``endpoint_url`` cannot be used: no credentials, not a URL,
    or nothing answering there (rather than boto3 retrying for a minute, or a traceback)."""
    parts = urlsplit(endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MlambdaLocalError(f"--endpoint-url {endpoint_url!r} is not an http(s) URL")
    if session.get_credentials() is None:
        raise MlambdaLocalError(
            f"no AWS credentials to call {endpoint_url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(any values for LocalStack) or AWS_PROFILE"
        )
    try:
        requests.get(endpoint_url, timeout=ENDPOINT_CHECK_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        reason = (
            type(exc).__name__ if isinstance(exc, requests.Timeout) else str(exc.args[0] if exc.args else exc)
        )
        raise MlambdaLocalError(
            f"nothing answers at {endpoint_url} ({reason}): start the endpoint (e.g. LocalStack) "
            "or leave --endpoint-url out to run the embedded moto"
        ) from exc


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class Provisioner:
    """Creates resources through boto3 clients on ``endpoint_url``."""

    def __init__(
        self,
        template: Template,
        resolver: IntrinsicResolver,
        session: boto3.session.Session,
        endpoint_url: str | None,
        function_timeouts: dict[str, float] | None = None,
    ) -> None:
        self.template = template
        self.resolver = resolver
        self.session = session
        self.endpoint_url = endpoint_url
        self.function_timeouts = function_timeouts or {}
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._handlers: dict[str, Callable[[str, dict[str, Any], InventoryItem, Inventory], None]] = {
            "AWS::DynamoDB::Table": self._table,
            "AWS::S3::Bucket": self._bucket,
            "AWS::SQS::Queue": self._queue,
            "AWS::SNS::Topic": self._topic,
            "AWS::SNS::Subscription": self._subscription,
            "AWS::Events::Rule": self._rule,
            "AWS::ApiGateway::UsagePlan": self._usage_plan,
        }

    def fingerprint(self) -> str | None:
        """What provisioning depends on: every resource's type, condition and resolved properties.

        None when a resolved property spells the endpoint's URL (a queue URL in a rule's input):
        the endpoint's port changes between starts, so such a template is provisioned every time.
        """
        resources: dict[str, Any] = {}
        for logical_id, resource in self.template.resources.items():
            kind = str(resource.get("Type", ""))
            if kind not in self._handlers:
                continue
            enabled = self.resolver.is_enabled(resource)
            properties = self.resolver.resolve(resource.get("Properties") or {}) if enabled else None
            resources[logical_id] = {"type": kind, "enabled": enabled, "properties": properties}
        document = json.dumps(
            {
                "version": PROVISIONING_VERSION,
                "stack": self.template.stack_name,
                "region": self.template.region,
                "account": self.template.account_id,
                "timeouts": self.function_timeouts,
                "resources": resources,
            },
            sort_keys=True,
            default=str,
        )
        if self.endpoint_url and self.endpoint_url.rstrip("/") in document:
            return None
        return hashlib.sha256(document.encode()).hexdigest()

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` on the endpoint, created on first use."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self.session.client(
                    service,
                    endpoint_url=self.endpoint_url,
                    config=Config(connect_timeout=5, retries={"max_attempts": 2, "mode": "standard"}),
                )
            return self._clients[service]

    def provision(self) -> Inventory:
        """Create every supported resource in dependency order; returns the inventory."""
        inventory = Inventory()
        for logical_id in dependency_order(self.template):
            resource = self.template.resources[logical_id]
            kind = str(resource.get("Type", ""))
            item = InventoryItem(logical_id=logical_id, type=kind, status="skipped")
            if not self.resolver.is_enabled(resource):
                item.status, item.note = "disabled", f"condition {resource.get('Condition')} is false"
            elif kind in self._handlers:
                properties = self.resolver.resolve(resource.get("Properties") or {})
                self._handlers[kind](logical_id, properties, item, inventory)
            elif kind in RUNNER_TYPES:
                item.status = "runner"
                if kind == "AWS::Lambda::Function":
                    item.physical_name = self.resolver.physical_name(logical_id)
                    item.arn = self.resolver.arn(logical_id)
            elif kind in SKIPPED_TYPES:
                item.note = "not needed locally"
            else:
                item.status, item.note = "unsupported", "the local cloud does not create this resource type"
                logger.warning("skipping %s (%s): not supported by the local cloud", logical_id, kind)
            inventory.add(item)
        return inventory

    # -- DynamoDB ------------------------------------------------------------------------------

    def _table(self, logical_id: str, properties: dict[str, Any], item: InventoryItem, _: Inventory) -> None:
        name = self.resolver.physical_name(logical_id)
        item.physical_name, item.arn = name, self.resolver.arn(logical_id)
        dynamodb = self.client("dynamodb")
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": properties["KeySchema"],
            "AttributeDefinitions": properties["AttributeDefinitions"],
        }
        billing = properties.get("BillingMode", "PROVISIONED")
        request["BillingMode"] = billing
        if billing == "PROVISIONED":
            request["ProvisionedThroughput"] = _throughput(properties.get("ProvisionedThroughput"))
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if properties.get(key):
                indexes = [dict(index) for index in properties[key]]
                if key == "GlobalSecondaryIndexes" and billing == "PROVISIONED":
                    for index in indexes:
                        index["ProvisionedThroughput"] = _throughput(index.get("ProvisionedThroughput"))
                request[key] = indexes
        if properties.get("StreamSpecification"):
            request["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": properties["StreamSpecification"]["StreamViewType"],
            }
        try:
            dynamodb.create_table(**request)
            item.status = "created"
        except ClientError as exc:
            if _error_code(exc) != "ResourceInUseException":
                raise
            item.status = "exists"
        ttl = properties.get("TimeToLiveSpecification")
        if ttl and str(ttl.get("Enabled", False)).lower() == "true":
            try:
                dynamodb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                )
            except ClientError as exc:
                if _error_code(exc) != "ValidationException":
                    raise
                logger.debug("TTL of %s already enabled: %s", name, exc)

    # -- S3 ------------------------------------------------------------------------------------

    def _bucket(
        self, logical_id: str, properties: dict[str, Any], item: InventoryItem, inventory: Inventory
    ) -> None:
        name = self.resolver.physical_name(logical_id)
        item.physical_name, item.arn = name, self.resolver.arn(logical_id)
        s3 = self.client("s3")
        request: dict[str, Any] = {"Bucket": name}
        if self.template.region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": self.template.region}
        try:
            s3.create_bucket(**request)
            item.status = "created"
        except ClientError as exc:
            if _error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
            item.status = "exists"
        versioning = (properties.get("VersioningConfiguration") or {}).get("Status")
        if versioning:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning})
        notifications = properties.get("NotificationConfiguration")
        if notifications:
            self._notifications(name, notifications, inventory)

    def _notifications(self, bucket: str, notifications: dict[str, Any], inventory: Inventory) -> None:
        """Lambda notifications become queue notifications to one internal queue per (bucket, function)."""
        queue_configurations = [
            {"QueueArn": entry["Queue"], "Events": [entry["Event"]], **_filter(entry)}
            for entry in notifications.get("QueueConfigurations") or []
        ]
        topic_configurations = [
            {"TopicArn": entry["Topic"], "Events": [entry["Event"]], **_filter(entry)}
            for entry in notifications.get("TopicConfigurations") or []
        ]
        routes: dict[str, S3Route] = {}
        for entry in notifications.get("LambdaConfigurations") or []:
            function_id = self.resolver.logical_id_for_function_arn(str(entry["Function"]))
            if function_id is None:
                raise TemplateError(
                    f"bucket {bucket}: notification target {entry['Function']!r} is not a function of this template"
                )
            route = routes.get(function_id)
            if route is None:
                route = self._internal_queue(bucket, function_id, len(inventory.s3_routes) + len(routes) + 1)
                routes[function_id] = route
            queue_configurations.append(
                {"QueueArn": route.queue_arn, "Events": [entry["Event"]], **_filter(entry)}
            )
        inventory.s3_routes.extend(routes.values())
        configuration: dict[str, Any] = {}
        if queue_configurations:
            configuration["QueueConfigurations"] = queue_configurations
        if topic_configurations:
            configuration["TopicConfigurations"] = topic_configurations
        self.client("s3").put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration=configuration
        )

    def _internal_queue(self, bucket: str, function_id: str, number: int) -> S3Route:
        name = f"{self.template.stack_name}-s3events-{number}"
        # Longer than the function may run, so an event is not delivered twice while it runs.
        visibility = int(self.function_timeouts.get(function_id, 3)) + 1
        url = self._create_queue(name, {"VisibilityTimeout": str(visibility)})
        arn = f"arn:aws:sqs:{self.template.region}:{self.template.account_id}:{name}"
        return S3Route(
            bucket=bucket, function_logical_id=function_id, queue_name=name, queue_url=url, queue_arn=arn
        )

    # -- SQS -----------------------------------------------------------------------------------

    def _create_queue(self, name: str, attributes: dict[str, str]) -> str:
        sqs = self.client("sqs")
        try:
            url: str = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        except ClientError as exc:
            if _error_code(exc) not in ("QueueAlreadyExists", "QueueNameExists"):
                raise
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            settable = {key: value for key, value in attributes.items() if key not in ("FifoQueue",)}
            if settable:
                sqs.set_queue_attributes(QueueUrl=url, Attributes=settable)
        return url

    def _queue(self, logical_id: str, properties: dict[str, Any], item: InventoryItem, _: Inventory) -> None:
        name = self.resolver.physical_name(logical_id)
        attributes: dict[str, str] = {}
        simple = (
            "DelaySeconds",
            "MaximumMessageSize",
            "MessageRetentionPeriod",
            "ReceiveMessageWaitTimeSeconds",
            "VisibilityTimeout",
            "KmsMasterKeyId",
            "KmsDataKeyReusePeriodSeconds",
            "SqsManagedSseEnabled",
            "DeduplicationScope",
            "FifoThroughputLimit",
        )
        for key in simple:
            if key in properties:
                attributes[key] = _attribute(properties[key])
        if _attribute(properties.get("FifoQueue", False)) == "true":
            attributes["FifoQueue"] = "true"
            if "ContentBasedDeduplication" in properties:
                attributes["ContentBasedDeduplication"] = _attribute(properties["ContentBasedDeduplication"])
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in properties:
                value = properties[key]
                attributes[key] = value if isinstance(value, str) else json.dumps(value)
        existed = self._queue_exists(name)
        item.url = self._create_queue(name, attributes)
        item.physical_name, item.arn = name, self.resolver.arn(logical_id)
        item.status = "exists" if existed else "created"

    def _queue_exists(self, name: str) -> bool:
        try:
            self.client("sqs").get_queue_url(QueueName=name)
        except ClientError:
            return False
        return True

    # -- SNS -----------------------------------------------------------------------------------

    def _usage_plan(
        self, logical_id: str, properties: dict[str, Any], item: InventoryItem, _: Inventory
    ) -> None:
        """The plan in the endpoint's API Gateway (once per name), where the keys function puts keys;
        the local gateway enforces it from the template (``throttling``)."""
        name = str(properties.get("UsagePlanName") or self.resolver.physical_name(logical_id))
        api = self.client("apigateway")
        existing = [plan for plan in api.get_usage_plans()["items"] if plan.get("name") == name]
        if existing:
            item.physical_name, item.status = existing[0]["id"], "exists"
            return
        throttle = properties.get("Throttle") or {}
        quota = properties.get("Quota") or {}
        created = api.create_usage_plan(
            name=name,
            description=str(properties.get("Description", "")),
            throttle={
                **({"rateLimit": float(throttle["RateLimit"])} if "RateLimit" in throttle else {}),
                **({"burstLimit": int(throttle["BurstLimit"])} if "BurstLimit" in throttle else {}),
            },
            quota={"limit": int(quota["Limit"]), "period": str(quota.get("Period", "DAY"))}
            if "Limit" in quota
            else {},
        )
        item.physical_name, item.status = created["id"], "created"

    def _topic(self, logical_id: str, properties: dict[str, Any], item: InventoryItem, _: Inventory) -> None:
        name = self.resolver.physical_name(logical_id)
        attributes = {}
        if _attribute(properties.get("FifoTopic", False)) == "true":
            attributes["FifoTopic"] = "true"
        sns = self.client("sns")
        arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
        item.physical_name, item.arn, item.status = name, arn, "created"
        for subscription in properties.get("Subscription") or properties.get("Subscriptions") or []:
            self._subscribe(arn, subscription["Protocol"], subscription["Endpoint"], {}, logical_id)

    def _subscription(
        self, logical_id: str, properties: dict[str, Any], item: InventoryItem, _: Inventory
    ) -> None:
        attributes = {
            key: _attribute(properties[key])
            for key in ("RawMessageDelivery", "FilterPolicyScope", "RedrivePolicy")
            if key in properties
        }
        if "FilterPolicy" in properties:
            attributes["FilterPolicy"] = json.dumps(properties["FilterPolicy"])
        item.arn = self._subscribe(
            properties["TopicArn"], properties["Protocol"], properties["Endpoint"], attributes, logical_id
        )
        item.status = "created"

    def _subscribe(
        self, topic_arn: str, protocol: str, endpoint: str, attributes: dict[str, str], logical_id: str
    ) -> str:
        if protocol == "lambda":
            raise TemplateError(
                f"{logical_id}: SNS subscriptions of functions (protocol lambda) are not supported by the local cloud"
            )
        response = self.client("sns").subscribe(
            TopicArn=topic_arn,
            Protocol=protocol,
            Endpoint=endpoint,
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )
        return str(response["SubscriptionArn"])

    # -- EventBridge -----------------------------------------------------------------------------

    def _rule(self, logical_id: str, properties: dict[str, Any], item: InventoryItem, _: Inventory) -> None:
        name = self.resolver.physical_name(logical_id)
        request: dict[str, Any] = {"Name": name, "State": properties.get("State", "ENABLED")}
        if "ScheduleExpression" in properties:
            request["ScheduleExpression"] = properties["ScheduleExpression"]
        if "EventPattern" in properties:
            pattern = properties["EventPattern"]
            request["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        if "Description" in properties:
            request["Description"] = properties["Description"]
        if properties.get("EventBusName"):
            request["EventBusName"] = properties["EventBusName"]
        events = self.client("events")
        arn = events.put_rule(**request)["RuleArn"]
        # Lambda targets stay out of moto: the runner invokes them itself (schedule.py), and moto
        # answers every later PutEvents with a 500 (NotImplementedError) once one is registered.
        targets = [
            {key: target[key] for key in ("Id", "Arn", "Input", "InputPath") if key in target}
            for target in properties.get("Targets") or []
            if ":lambda:" not in str(target.get("Arn", ""))
        ]
        if targets:
            target_request: dict[str, Any] = {"Rule": name, "Targets": targets}
            if properties.get("EventBusName"):
                target_request["EventBusName"] = properties["EventBusName"]
            events.put_targets(**target_request)
        item.physical_name, item.arn, item.status = name, arn, "created"


def _attribute(value: Any) -> str:
    """SQS/SNS attributes are strings; CloudFormation booleans are lowercase."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower() if str(value) in ("True", "False") else str(value)


def _throughput(value: Any) -> dict[str, int]:
    value = value or {}
    return {
        "ReadCapacityUnits": int(value.get("ReadCapacityUnits", 5)),
        "WriteCapacityUnits": int(value.get("WriteCapacityUnits", 5)),
    }


def _filter(entry: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's ``Filter.S3Key.Rules`` -> the API's ``Filter.Key.FilterRules``."""
    rules = ((entry.get("Filter") or {}).get("S3Key") or {}).get("Rules")
    if not rules:
        return {}
    return {
        "Filter": {"Key": {"FilterRules": [{"Name": rule["Name"], "Value": rule["Value"]} for rule in rules]}}
    }
