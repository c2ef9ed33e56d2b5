"""`smserve push` (and `make push`): an image into Amazon ECR, ready to pass to SageMaker as a custom image URI.

Creates the repository when it is missing, logs the Docker engine in with an ECR authorization token (never
written to disk: it goes to the engine in the push request), tags and pushes, and returns the image URI. The
ECR API is reached with the standard AWS configuration (credentials chain, AWS_REGION, and
AWS_ENDPOINT_URL_ECR for a non-AWS endpoint), the registry through the Docker engine.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from .local import LocalError, docker_client

ECR_REGISTRY = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


class PushError(Exception):
    """Why the push did not happen; the message says what to fix. Nothing is left half-done on the registry
    side that a retry would not complete."""


@dataclass(frozen=True)
class Pushed:
    uri: str
    digest: str | None
    created_repository: bool


def split_registry(registry: str, region: str | None) -> tuple[str | None, str]:
    """(account, region) of an ECR registry host; other registries need the region given."""
    match = ECR_REGISTRY.match(registry)
    if match:
        return match["account"], region or match["region"]
    if not region:
        raise PushError(f"{registry} is not an ECR registry host (<account>.dkr.ecr.<region>.amazonaws.com); "
                        f"pass --region for its ECR API")
    return None, region


def ecr_login(registry: str, repository: str, region: str, account: str | None) -> tuple[dict, bool]:
    """The repository exists afterwards; returns (Docker auth config, whether it was created)."""
    import boto3
    import botocore.exceptions

    ecr = boto3.client("ecr", region_name=region)
    scope = {"registryId": account} if account else {}
    try:
        try:
            ecr.describe_repositories(repositoryNames=[repository], **scope)
            created = False
        except ecr.exceptions.RepositoryNotFoundException:
            ecr.create_repository(repositoryName=repository, **scope)
            created = True
        token = ecr.get_authorization_token(**({"registryIds": [account]} if account else {}))
    except botocore.exceptions.NoCredentialsError:
        raise PushError("no AWS credentials found; configure them (aws configure, AWS_PROFILE, or "
                        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and retry") from None
    except botocore.exceptions.EndpointConnectionError as exc:
        raise PushError(f"the ECR API cannot be reached ({exc}); check the network, the region ({region}) and "
                        f"AWS_ENDPOINT_URL_ECR") from None
    except botocore.exceptions.ClientError as exc:
        raise PushError(f"ECR refused {exc.operation_name}: {exc.response['Error'].get('Message', exc)}; check "
                        f"the role's ecr:CreateRepository / ecr:GetAuthorizationToken permissions") from None
    data = token["authorizationData"][0]
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return {"username": username, "password": password, "serveraddress": registry}, created


def push(image: str, registry: str, repository: str | None = None, tag: str | None = None,
         region: str | None = None) -> Pushed:
    try:
        client = docker_client()
    except LocalError as exc:
        raise PushError(str(exc)) from None
    import docker.errors

    try:
        local = client.images.get(image)
    except docker.errors.ImageNotFound:
        raise PushError(f"image {image} is not on this machine; build it first (`make image FAMILY=...`)") from None
    name, _, own_tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
    repository = repository or name.split("/")[-1]
    tag = tag or own_tag
    account, region = split_registry(registry, region)
    auth, created = ecr_login(registry, repository, region, account)
    target = f"{registry}/{repository}"
    local.tag(target, tag)
    digest = None
    try:
        for event in client.api.push(target, tag=tag, auth_config=auth, stream=True, decode=True):
            if "error" in event:
                raise PushError(f"pushing {target}:{tag} failed: {event['error']}")
            digest = event.get("aux", {}).get("Digest", digest)
    except docker.errors.APIError as exc:
        raise PushError(f"pushing {target}:{tag} failed: {exc.explanation or exc}") from None
    except OSError as exc:
        raise PushError(f"the registry {registry} cannot be reached: {exc}") from None
    finally:
        try:
            client.api.remove_image(f"{target}:{tag}", noprune=True)  # the local alias only; the image stays
        except docker.errors.APIError:
            pass  # an alias left behind costs nothing
    return Pushed(f"{target}:{tag}", digest, created)
