"""Replica-count rules: the HPA's inputs, PodDisruptionBudgets that block or allow everything, and values
that make replicas differ (an ignored replicaCount, a moving image tag)."""

from __future__ import annotations

from validator.model import ERROR, WARNING, Finding
from validator.rules.core import Context, rule, truthy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from validator.rules.core import Emit


@rule("hpa-target-without-requests", ERROR, "HPA CPU/memory target without resources.requests.cpu/memory")
def hpa_target_without_requests(ctx: Context, finding: Emit) -> Iterator[Finding]:
    if not truthy(ctx.get("autoscaling", "enabled")):
        return
    requests = ctx.get("resources", "requests")
    requests = requests if isinstance(requests, dict) else {}
    for metric, key in (
        ("cpu", "targetCPUUtilizationPercentage"),
        ("memory", "targetMemoryUtilizationPercentage"),
    ):
        if truthy(ctx.get("autoscaling", key)) and not truthy(requests.get(metric)):
            yield finding(
                f"autoscaling.{key} is set but resources.requests.{metric} is not: the HPA cannot compute "
                f"{metric} utilisation and will never scale",
                f"set resources.requests.{metric} (e.g. {'250m' if metric == 'cpu' else '256Mi'}), "
                f"or set autoscaling.{key}=null",
                f"autoscaling.{key}",
                ctx.loc("autoscaling", key),
            )


def _unavailable(value: object, pods: int) -> int | None:
    """PDB maxUnavailable resolved like the disruption controller (percentages round up)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return -(-int(value[:-1]) * pods // 100)
    return None


def _rendered_budget(ctx: Context) -> tuple[int, object, int | None]:
    """(minimum pods, maxUnavailable as written, pods it lets go); the last two are None without a PDB."""
    low, _ = ctx.replica_range()
    pdb = ctx.mapping("podDisruptionBudget")
    if not truthy(pdb.get("enabled")) or low <= 1:
        return low, None, None  # no PDB rendered: nothing to check
    raw = pdb.get("maxUnavailable")
    return low, raw, _unavailable(raw, low)


@rule("pdb-blocks-eviction", ERROR, "PodDisruptionBudget that can never allow an eviction")
def pdb_blocks_eviction(ctx: Context, finding: Emit) -> Iterator[Finding]:
    _, raw, allowed = _rendered_budget(ctx)
    if allowed is not None and allowed <= 0:
        yield finding(
            f"podDisruptionBudget.maxUnavailable={raw} allows no eviction: node drains "
            "and cluster upgrades would block forever",
            "set podDisruptionBudget.maxUnavailable to 1 (or a percentage that rounds to at least one pod)",
            "podDisruptionBudget.maxUnavailable",
            ctx.loc("podDisruptionBudget", "maxUnavailable"),
        )


@rule("pdb-allows-full-outage", WARNING, "PDB maxUnavailable covers every pod at the minimum replica count")
def pdb_allows_full_outage(ctx: Context, finding: Emit) -> Iterator[Finding]:
    low, raw, allowed = _rendered_budget(ctx)
    if allowed is not None and allowed >= low:
        yield finding(
            f"podDisruptionBudget.maxUnavailable={raw} lets a drain evict all {low} "
            "pods at once: the budget protects nothing",
            f"set podDisruptionBudget.maxUnavailable below {low} (1 is the usual choice)",
            "podDisruptionBudget.maxUnavailable",
            ctx.loc("podDisruptionBudget", "maxUnavailable"),
        )


@rule(
    "pdb-not-rendered",
    WARNING,
    "podDisruptionBudget.enabled set explicitly, but at most one pod is guaranteed",
)
def pdb_not_rendered(ctx: Context, finding: Emit) -> Iterator[Finding]:
    low, _ = ctx.replica_range()
    if (
        low <= 1
        and ctx.user_set("podDisruptionBudget", "enabled")
        and truthy(ctx.get("podDisruptionBudget", "enabled"))
    ):
        source = "autoscaling.minReplicas" if truthy(ctx.get("autoscaling", "enabled")) else "replicaCount"
        yield finding(
            f"podDisruptionBudget.enabled=true but {source}={low}: the chart renders no PodDisruptionBudget "
            "(one pod cannot be protected), so a drain may take the service down",
            f"raise {source} to 2 or more for a budget that keeps one pod serving",
            "podDisruptionBudget.enabled",
            ctx.loc("podDisruptionBudget", "enabled"),
        )


@rule("replica-count-ignored", WARNING, "replicaCount set while autoscaling.enabled=true (the HPA decides)")
def replica_count_ignored(ctx: Context, finding: Emit) -> Iterator[Finding]:
    if truthy(ctx.get("autoscaling", "enabled")) and ctx.user_set("replicaCount"):
        yield finding(
            "replicaCount is ignored while autoscaling.enabled=true (the Deployment has no replicas field; "
            "the HPA picks between minReplicas and maxReplicas)",
            "remove replicaCount, and set autoscaling.minReplicas instead",
            "replicaCount",
            ctx.loc("replicaCount"),
        )


@rule("image-tag-latest", WARNING, "image.tag is latest (replicas may run different builds)")
def image_tag_latest(ctx: Context, finding: Emit) -> Iterator[Finding]:
    tag = ctx.get("image", "tag")
    if isinstance(tag, str) and tag.lower() == "latest":
        yield finding(
            "image.tag is 'latest': pods started at different times may run different builds, and a rollback "
            "cannot return to the previous one",
            "pin an immutable version (leave image.tag empty for the chart's appVersion)",
            "image.tag",
            ctx.loc("image", "tag"),
        )
