"""Load a SAM template, expand it offline with the SAM translator, and resolve its intrinsics.

The template stays the single source of truth: what runs locally is what SAM would deploy,
with every ``Ref``/``Fn::GetAtt``/``Fn::Sub`` turned into the local names (``<stack>-<LogicalId>``
unless the resource names itself) and ARNs in the fake account ``123456789012``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import yaml

from mlambda_local.cloud.errors import TemplateError
from mlambda_local.private_files import write_private_json

logger = logging.getLogger("mlambda.local")

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"
TRANSLATION_CACHE = "template-expanded.json"  # in the local cloud's data directory
LOCAL_CODE_BUCKET = "mlambda-local-code"

_SHORT_TAGS = (
    "Ref",
    "Condition",
    "GetAtt",
    "Sub",
    "If",
    "Join",
    "Select",
    "Split",
    "Equals",
    "Not",
    "And",
    "Or",
    "FindInMap",
    "ImportValue",
    "GetAZs",
    "Base64",
    "Cidr",
    "Length",
    "ToJsonString",
)


class CloudFormationLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A SafeLoader that understands CloudFormation's short-form tags (``!Ref``, ``!Sub``...).

    libyaml's loader where PyYAML has it: the same documents, ten times faster (0.07 s against
    0.7 s for the project's template, read at every start).
    """


def _construct_short_form(tag: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            assert isinstance(node, yaml.MappingNode)
            value = loader.construct_mapping(node, deep=True)
        if tag in ("Ref", "Condition"):
            return {tag: value}
        if tag == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{tag}": value}

    return construct


for _tag in _SHORT_TAGS:
    CloudFormationLoader.add_constructor(f"!{_tag}", _construct_short_form(_tag))


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a CloudFormation/SAM YAML (or JSON) file into plain dicts with long-form intrinsics."""
    try:
        with path.open(encoding="utf-8") as stream:
            loaded = yaml.load(stream, Loader=CloudFormationLoader)
    except OSError as exc:
        raise TemplateError(f"cannot read template {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise TemplateError(f"template {path} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict) or not isinstance(loaded.get("Resources"), dict):
        raise TemplateError(f"template {path} has no Resources mapping")
    return loaded


class OfflinePolicyLoader:
    """Stands in for samtranslator's ManagedPolicyLoader: policy ARNs are never checked locally."""

    def load(self) -> dict[str, str]:
        """No IAM call: an empty map makes SAM build managed-policy ARNs from their names."""
        return {}


def _is_local_uri(value: Any) -> bool:
    return isinstance(value, str) and not value.startswith("s3://")


def _prepare_for_translation(sam: dict[str, Any], template_dir: Path) -> None:
    """Swap local code paths for S3 placeholders (as ``sam validate`` does) and inline local API definitions."""
    globals_function = sam.get("Globals", {}).get("Function", {})
    if _is_local_uri(globals_function.get("CodeUri")):
        globals_function["CodeUri"] = f"s3://{LOCAL_CODE_BUCKET}/globals"
    for logical_id, resource in sam["Resources"].items():
        if not isinstance(resource, dict):
            raise TemplateError(f"resource {logical_id} is not a mapping")
        properties = resource.get("Properties") or {}
        kind = resource.get("Type")
        if kind == "AWS::Serverless::Function":
            if "CodeUri" in properties and _is_local_uri(properties["CodeUri"]):
                properties["CodeUri"] = f"s3://{LOCAL_CODE_BUCKET}/{logical_id}"
        elif kind == "AWS::Serverless::LayerVersion":
            if _is_local_uri(properties.get("ContentUri")):
                properties["ContentUri"] = f"s3://{LOCAL_CODE_BUCKET}/{logical_id}"
        elif kind == "AWS::Serverless::Api" and _is_local_uri(properties.get("DefinitionUri")):
            properties["DefinitionBody"] = load_yaml_document(template_dir / properties.pop("DefinitionUri"))


def load_yaml_document(path: Path) -> dict[str, Any]:
    """Read an OpenAPI document referenced by ``DefinitionUri``."""
    try:
        with path.open(encoding="utf-8") as stream:
            loaded = yaml.load(stream, Loader=CloudFormationLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"cannot read API definition {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise TemplateError(f"API definition {path} is not a mapping")
    return loaded


@dataclass(frozen=True)
class Template:
    """A SAM template as written (``original``) and as SAM expands it (``translated``)."""

    path: Path
    original: dict[str, Any]
    translated: dict[str, Any]
    parameters: dict[str, Any]
    stack_name: str
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID

    @property
    def directory(self) -> Path:
        """Where CodeUri paths are relative to."""
        return self.path.parent

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        """The translated (CloudFormation) resources."""
        resources: dict[str, dict[str, Any]] = self.translated.get("Resources", {})
        return resources

    def sam_resource(self, logical_id: str) -> dict[str, Any]:
        """The resource as written in the SAM template, or ``{}`` if SAM generated it."""
        resource: dict[str, Any] = self.original.get("Resources", {}).get(logical_id, {})
        return resource

    def function_globals(self) -> dict[str, Any]:
        """``Globals.Function`` of the SAM template."""
        found: dict[str, Any] = self.original.get("Globals", {}).get("Function", {}) or {}
        return found


def pseudo_parameters(stack_name: str, region: str, account_id: str) -> dict[str, Any]:
    """The pseudo-parameters SAM CLI feeds the translator, with local values."""
    return {
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::StackName": stack_name,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackId": f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/"
        f"{hashlib.sha1(stack_name.encode()).hexdigest()[:8]}-local",
        "AWS::NotificationARNs": [],
    }


def parameter_values(
    sam: Mapping[str, Any], given: Mapping[str, Any] | None, pseudo: Mapping[str, Any]
) -> dict[str, Any]:
    """Template parameters: given values over defaults, lists split; a required one missing is an error."""
    values: dict[str, Any] = dict(pseudo)
    given = dict(given or {})
    for name, declaration in (sam.get("Parameters") or {}).items():
        if name in given:
            value = given.pop(name)
        elif "Default" in declaration:
            value = declaration["Default"]
        else:
            raise TemplateError(f"parameter {name} has no default and no value was given")
        kind = str(declaration.get("Type", "String"))
        if (kind == "CommaDelimitedList" or kind.startswith("List<")) and isinstance(value, str):
            value = [item.strip() for item in value.split(",")] if value else []
        elif kind == "Number":
            value = str(value)
        values[name] = value
    if given:
        raise TemplateError(f"unknown template parameters: {', '.join(sorted(given))}")
    return values


def load_template(
    path: Path | str,
    *,
    stack_name: str = "mlambda-local",
    parameters: Mapping[str, Any] | None = None,
    region: str = DEFAULT_REGION,
    account_id: str = DEFAULT_ACCOUNT_ID,
    cache_dir: Path | None = None,
) -> Template:
    """Read ``path`` and expand it with the SAM translator, without any AWS call.

    ``cache_dir``: keep the expansion there, keyed by everything it depends on (the template
    with its inlined API definitions, the parameters, the translator's version), and reuse it:
    SAM's translation is a second of a restart's CPU, for an answer that rarely changes.
    """
    path = Path(path).resolve()
    original = load_yaml(path)
    sam = copy.deepcopy(original)
    _prepare_for_translation(sam, path.parent)
    pseudo = pseudo_parameters(stack_name, region, account_id)
    values = parameter_values(original, parameters, pseudo)
    cache = None if cache_dir is None else cache_dir / TRANSLATION_CACHE
    key = _translation_key(sam, values)
    cached = _cached_translation(cache, key)
    if cached is not None:
        translated = cached
    else:
        translated = _translate(path, sam, values, region)
        if cache is not None:
            write_private_json(cache, {"key": key, "translated": translated})
    return Template(
        path=path,
        original=original,
        translated=translated,
        parameters=values,
        stack_name=stack_name,
        region=region,
        account_id=account_id,
    )


def _translate(path: Path, sam: dict[str, Any], values: Mapping[str, Any], region: str) -> dict[str, Any]:
    """SAM's expansion of ``sam`` (already prepared), as plain JSON types.

    The translator (and boto3, which it asks for the region) is imported here, on a cache miss
    only: importing it is about a second of CPU, more than the rest of a restart before the
    first workers start.
    """
    import boto3
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    from samtranslator.utils.py27hash_fix import (
        to_py27_compatible_template,
        undo_mark_unicode_str_in_template,
    )

    translator_values = dict(values)
    to_py27_compatible_template(sam, translator_values)
    # A session with an explicit region: the translator asks it for AWS::Region/Partition and
    # would otherwise need AWS_DEFAULT_REGION in the environment. Creating it makes no call.
    session = boto3.session.Session(
        region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    translator = Translator(None, Parser(), boto_session=session)
    try:
        translated = translator.translate(
            sam,
            parameter_values=translator_values,
            get_managed_policy_map=OfflinePolicyLoader().load,
        )
    except InvalidDocumentException as exc:
        problems = "; ".join(str(cause) for cause in exc.causes)
        raise TemplateError(f"SAM cannot translate {path}: {problems}") from exc
    # Through JSON, as a cached one is: the same types whether cached or not.
    plain: dict[str, Any] = json.loads(json.dumps(undo_mark_unicode_str_in_template(translated)))
    return plain


def _translation_key(sam: dict[str, Any], values: Mapping[str, Any]) -> str:
    document = {"sam": sam, "values": values, "translator": metadata.version("aws-sam-translator")}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def _cached_translation(cache: Path | None, key: str) -> dict[str, Any] | None:
    """The cached expansion if it was made from the same inputs (anything unreadable is a miss)."""
    if cache is None:
        return None
    try:
        document = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("key") != key:
        return None
    translated = document.get("translated")
    return translated if isinstance(translated, dict) else None


class _NoValue:
    """``Ref: AWS::NoValue``: the key or list item disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


@dataclass
class IntrinsicResolver:
    """Resolves intrinsic functions against local physical names.

    ``queue_url_base`` is the endpoint SQS URLs point at (the moto server), since functions pass
    those URLs straight to boto3.
    """

    template: Template
    queue_url_base: str | None = None
    _conditions: dict[str, bool] = field(default_factory=dict)

    NAME_PROPERTIES: ClassVar[dict[str, str]] = {
        "AWS::DynamoDB::Table": "TableName",
        "AWS::S3::Bucket": "BucketName",
        "AWS::SQS::Queue": "QueueName",
        "AWS::SNS::Topic": "TopicName",
        "AWS::Lambda::Function": "FunctionName",
        "AWS::Events::Rule": "Name",
        "AWS::IAM::Role": "RoleName",
        "AWS::Lambda::LayerVersion": "LayerName",
        "AWS::Logs::LogGroup": "LogGroupName",
    }

    @property
    def region(self) -> str:
        return self.template.region

    @property
    def account_id(self) -> str:
        return self.template.account_id

    # -- names -------------------------------------------------------------------------------

    def resource(self, logical_id: str) -> dict[str, Any]:
        """A translated resource, or a TemplateError naming the missing id."""
        found = self.template.resources.get(logical_id)
        if found is None:
            raise TemplateError(f"reference to unknown resource or parameter {logical_id!r}")
        return found

    def physical_name(self, logical_id: str) -> str:
        """The resource's own name property after resolution, else ``<stack>-<LogicalId>``."""
        resource = self.resource(logical_id)
        kind = resource.get("Type", "")
        properties = resource.get("Properties") or {}
        name_property = self.NAME_PROPERTIES.get(kind)
        if name_property and properties.get(name_property) not in (None, ""):
            resolved = self.resolve(properties[name_property])
            if resolved is not NO_VALUE and resolved != "":
                return str(resolved)
        name = f"{self.template.stack_name}-{logical_id}"
        if kind == "AWS::S3::Bucket":
            name = name.lower()[:63]
        if kind == "AWS::SQS::Queue" and self.resolve(properties.get("FifoQueue", False)) in (True, "true"):
            name = f"{name}.fifo"
        return name

    def rest_api_id(self, logical_id: str) -> str:
        """A stable, API Gateway-shaped id (10 lowercase alphanumerics) for a RestApi."""
        digest = hashlib.sha1(f"{self.template.stack_name}/{logical_id}".encode()).hexdigest()
        return digest[:10]

    def queue_url(self, name: str) -> str:
        """The URL of queue ``name`` as the endpoint in use spells it."""
        base = self.queue_url_base or f"https://sqs.{self.region}.amazonaws.com"
        return f"{base.rstrip('/')}/{self.account_id}/{name}"

    def arn(self, logical_id: str) -> str:
        """The ARN of a resource, built as AWS builds it."""
        kind = self.resource(logical_id).get("Type", "")
        name = self.physical_name(logical_id)
        region, account = self.region, self.account_id
        arns = {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{region}:{account}:table/{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{region}:{account}:{name}",
            "AWS::SNS::Topic": f"arn:aws:sns:{region}:{account}:{name}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{region}:{account}:function:{name}",
            "AWS::Events::Rule": f"arn:aws:events:{region}:{account}:rule/{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{account}:role/{name}",
            "AWS::Lambda::LayerVersion": f"arn:aws:lambda:{region}:{account}:layer:{name}:1",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{region}:{account}:log-group:{name}:*",
        }
        if kind in arns:
            return arns[kind]
        service = kind.split("::")[1].lower() if kind.count("::") >= 2 else "unknown"
        return f"arn:aws:{service}:{region}:{account}:{name}"

    def ref(self, name: str) -> Any:
        """``Ref``: a parameter (incl. pseudo-parameters) or a resource's physical id."""
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.template.parameters:
            return self.template.parameters[name]
        resource = self.resource(name)
        kind = resource.get("Type", "")
        if kind == "AWS::SQS::Queue":
            return self.queue_url(self.physical_name(name))
        if kind in ("AWS::SNS::Topic", "AWS::Lambda::LayerVersion"):
            return self.arn(name)
        if kind == "AWS::ApiGateway::RestApi":
            return self.rest_api_id(name)
        if kind == "AWS::ApiGateway::Stage":
            return str(self.resolve((resource.get("Properties") or {}).get("StageName", name)))
        return self.physical_name(name)

    def get_att(self, logical_id: str, attribute: str) -> Any:
        """``Fn::GetAtt`` for the attributes templates use (Arn, QueueUrl, QueueName, StreamArn...)."""
        kind = self.resource(logical_id).get("Type", "")
        name = self.physical_name(logical_id)
        if attribute == "Arn":
            return self.arn(logical_id)
        attributes: dict[str, Any] = {}
        if kind == "AWS::SQS::Queue":
            attributes = {"QueueUrl": self.queue_url(name), "QueueName": name}
        elif kind == "AWS::SNS::Topic":
            attributes = {"TopicName": name, "TopicArn": self.arn(logical_id)}
        elif kind == "AWS::DynamoDB::Table":
            attributes = {"StreamArn": f"{self.arn(logical_id)}/stream/1970-01-01T00:00:00.000"}
        elif kind == "AWS::S3::Bucket":
            attributes = {
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com",
                "WebsiteURL": f"http://{name}.s3-website-{self.region}.amazonaws.com",
            }
        elif kind == "AWS::ApiGateway::RestApi":
            attributes = {"RootResourceId": f"{self.rest_api_id(logical_id)}root"}
        elif kind == "AWS::IAM::Role":
            attributes = {"RoleId": f"AROA{hashlib.sha1(name.encode()).hexdigest()[:17].upper()}"}
        elif kind == "AWS::Lambda::LayerVersion":
            attributes = {"LayerVersionArn": self.arn(logical_id)}
        if attribute not in attributes:
            raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute} is not supported locally ({kind})")
        return attributes[attribute]

    # -- conditions --------------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        """Evaluate (once) a named condition of the template."""
        if name not in self._conditions:
            conditions = self.template.translated.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"unknown condition {name!r}")
            self._conditions[name] = bool(self._evaluate_condition(conditions[name]))
        return self._conditions[name]

    def _evaluate_condition(self, expression: Any) -> bool:
        if isinstance(expression, dict) and len(expression) == 1 and "Condition" in expression:
            return self.condition(str(expression["Condition"]))
        resolved = self.resolve(expression)
        if isinstance(resolved, bool):
            return resolved
        return str(resolved).lower() == "true"

    def is_enabled(self, resource: Mapping[str, Any]) -> bool:
        """False for a resource whose ``Condition`` is false (CloudFormation would not create it)."""
        name = resource.get("Condition")
        return True if name is None else self.condition(str(name))

    # -- resolution --------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        """Resolve every intrinsic in ``value`` (recursively); ``AWS::NoValue`` items are dropped."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), *_ = value.items()
            handler = self._FUNCTIONS.get(key)
            if handler is not None:
                return handler(self, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _fn_ref(self, argument: Any) -> Any:
        return self.ref(str(self.resolve(argument)))

    def _fn_get_att(self, argument: Any) -> Any:
        argument = self.resolve(argument)
        if isinstance(argument, str):
            argument = argument.split(".", 1)
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError(f"malformed Fn::GetAtt {argument!r}")
        return self.get_att(str(argument[0]), str(argument[1]))

    def _fn_sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            if len(argument) != 2 or not isinstance(argument[1], dict):
                raise TemplateError(f"malformed Fn::Sub {argument!r}")
            text, variables = argument[0], {k: self.resolve(v) for k, v in argument[1].items()}
        else:
            text, variables = argument, {}
        if not isinstance(text, str):
            raise TemplateError(f"malformed Fn::Sub {argument!r}")

        def substitute(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in variables:
                return str(variables[expression])
            if "." in expression and expression.split(".", 1)[0] not in self.template.parameters:
                logical_id, attribute = expression.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(expression))

        return _SUB_VARIABLE.sub(substitute, text)

    def _fn_join(self, argument: Any) -> str:
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError(f"malformed Fn::Join {argument!r}")
        delimiter, items = self.resolve(argument[0]), self.resolve(argument[1])
        if not isinstance(items, list):
            raise TemplateError(f"Fn::Join needs a list, got {items!r}")
        return str(delimiter).join(str(item) for item in items)

    def _fn_select(self, argument: Any) -> Any:
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError(f"malformed Fn::Select {argument!r}")
        index, items = int(self.resolve(argument[0])), self.resolve(argument[1])
        if not isinstance(items, list) or not 0 <= index < len(items):
            raise TemplateError(f"Fn::Select index {index} out of range for {items!r}")
        return items[index]

    def _fn_split(self, argument: Any) -> list[str]:
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError(f"malformed Fn::Split {argument!r}")
        return str(self.resolve(argument[1])).split(str(self.resolve(argument[0])))

    def _fn_if(self, argument: Any) -> Any:
        if not isinstance(argument, list) or len(argument) != 3:
            raise TemplateError(f"malformed Fn::If {argument!r}")
        return self.resolve(argument[1] if self.condition(str(argument[0])) else argument[2])

    def _fn_equals(self, argument: Any) -> bool:
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError(f"malformed Fn::Equals {argument!r}")
        left, right = self.resolve(argument[0]), self.resolve(argument[1])
        return str(left) == str(right)

    def _fn_not(self, argument: Any) -> bool:
        if not isinstance(argument, list) or len(argument) != 1:
            raise TemplateError(f"malformed Fn::Not {argument!r}")
        return not self._evaluate_condition(argument[0])

    def _fn_and(self, argument: Any) -> bool:
        return all(self._evaluate_condition(item) for item in argument)

    def _fn_or(self, argument: Any) -> bool:
        return any(self._evaluate_condition(item) for item in argument)

    def _fn_condition(self, argument: Any) -> bool:
        return self.condition(str(argument))

    def _fn_find_in_map(self, argument: Any) -> Any:
        if not isinstance(argument, list) or len(argument) < 3:
            raise TemplateError(f"malformed Fn::FindInMap {argument!r}")
        map_name, top, second = (str(self.resolve(item)) for item in argument[:3])
        mappings = self.template.translated.get("Mappings") or {}
        try:
            return self.resolve(mappings[map_name][top][second])
        except KeyError:
            if len(argument) > 3 and isinstance(argument[3], dict) and "DefaultValue" in argument[3]:
                return self.resolve(argument[3]["DefaultValue"])
            raise TemplateError(f"Fn::FindInMap {map_name}/{top}/{second} not found") from None

    def _fn_import_value(self, argument: Any) -> Any:
        raise TemplateError(
            f"Fn::ImportValue {argument!r}: cross-stack imports cannot be resolved by the local cloud"
        )

    def _fn_get_azs(self, argument: Any) -> list[str]:
        return [f"{self.region}{zone}" for zone in "abc"]

    def _fn_base64(self, argument: Any) -> str:
        return base64.b64encode(str(self.resolve(argument)).encode()).decode()

    _FUNCTIONS: ClassVar[dict[str, Any]] = {
        "Ref": _fn_ref,
        "Fn::GetAtt": _fn_get_att,
        "Fn::Sub": _fn_sub,
        "Fn::Join": _fn_join,
        "Fn::Select": _fn_select,
        "Fn::Split": _fn_split,
        "Fn::If": _fn_if,
        "Fn::Equals": _fn_equals,
        "Fn::Not": _fn_not,
        "Fn::And": _fn_and,
        "Fn::Or": _fn_or,
        "Condition": _fn_condition,
        "Fn::FindInMap": _fn_find_in_map,
        "Fn::ImportValue": _fn_import_value,
        "Fn::GetAZs": _fn_get_azs,
        "Fn::Base64": _fn_base64,
    }

    def outputs(self) -> dict[str, Any]:
        """The template's Outputs with their values resolved (conditional outputs left out)."""
        resolved: dict[str, Any] = {}
        for name, output in (self.template.translated.get("Outputs") or {}).items():
            if self.is_enabled(output):
                resolved[name] = self.resolve(output.get("Value"))
        return resolved

    def logical_id_for_function_arn(self, arn: str) -> str | None:
        """Map a function ARN (or an invocation URI containing one) back to the function's logical id."""
        match = re.search(r"function:([A-Za-z0-9_\-]+)", arn)
        if match is None:
            return None
        for logical_id, resource in self.template.resources.items():
            if resource.get("Type") == "AWS::Lambda::Function" and self.physical_name(
                logical_id
            ) == match.group(1):
                return logical_id
        return None
