"""The Prometheus provider: PromQL in, one float or ``NoData`` out, never an exception.

Built on prometheus-api-client's ``PrometheusConnect.custom_query`` (an instant query) with a
short timeout and no retries: the analysis runs again next interval anyway, and the no-data
policy, not an HTTP client's back-off, decides how long missing data may last. Every failure a
query can meet (refused connection, timeout, HTTP error, a body that is not the API's JSON, an
empty vector, several series, NaN or ±Inf) becomes ``NoData`` with a short reason, because an
empty or failing query must never crash an analysis or be read as a pass or a breach.
"""

from __future__ import annotations

import math
import re
from types import TracebackType
from typing import Any, cast

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from rollout_operator.analysis.provider import NoData

DEFAULT_TIMEOUT_S = 5.0
_REASON_CHARS = 300
_HTTP_STATUS = re.compile(r"HTTP Status Code (\d+)")
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
_ERROR_TEXT = re.compile(r'"error"\s*:\s*"((?:[^"\\]|\\.)*)"')


class PrometheusProvider:
    """Instant queries against one Prometheus server (``url`` such as ``http://prom:9090``)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._client = PrometheusConnect(
            url=self.url,
            headers=headers or {},
            retry=Retry(total=0, raise_on_status=False),
            session=self._session,
            # Annotated int, but handed to requests, which takes fractional seconds too.
            timeout=cast(int, timeout_s),
        )

    def query(self, promql: str) -> float | NoData:
        try:
            result = self._client.custom_query(promql)
        except PrometheusApiClientException as exc:
            return _http_error(str(exc))
        except (requests.Timeout, requests.ConnectionError) as exc:
            return _connection_error(self.url, self.timeout_s, exc)
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            # ValueError: the body is not JSON; KeyError/TypeError: JSON without data.result.
            return NoData(_short(f"unreadable answer from Prometheus at {self.url}: {exc!r}"))
        return read_result(result)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PrometheusProvider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_result(result: Any) -> float | NoData:
    """The single number in an instant query's ``data.result`` (a vector or a scalar)."""
    if _is_sample(result):  # scalar result: [time, "value"]
        return _finite(result[1])
    if not isinstance(result, list):
        return NoData(f"unexpected query result {_short(repr(result))}")
    if not result:
        return NoData("query returned no series")
    if len(result) > 1:
        return NoData(f"query returned {len(result)} series, expected 1")
    series = result[0]
    if not isinstance(series, dict) or not _is_sample(series.get("value")):
        return NoData("query returned a range vector or an unknown shape, expected one sample")
    return _finite(series["value"][1])


def _is_sample(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], int | float)
        and isinstance(value[1], str)
    )


def _finite(text: str) -> float | NoData:
    try:
        value = float(text)
    except ValueError:
        return NoData(f"query returned a non-number {text!r}")
    if math.isnan(value):
        return NoData("query returned NaN (e.g. 0/0: no traffic in the window)")
    if math.isinf(value):
        return NoData(f"query returned {value:+}")
    return value


def _http_error(message: str) -> NoData:
    status = _HTTP_STATUS.search(message)
    code = int(status.group(1)) if status else 0
    error = _ERROR_TEXT.search(message)
    text = error.group(1) if error else message
    # 400 is Prometheus' "bad_data": the query does not parse. 422 (execution) and 5xx are not
    # the query's fault for certain, so they are plain outages.
    return NoData(_short(f"Prometheus answered HTTP {code}: {text}"), bad_query=code == 400)


def _connection_error(url: str, timeout_s: float, exc: requests.RequestException) -> NoData:
    text = str(exc)
    # Without retries urllib3 reports a read timeout as an exhausted retry: a ConnectionError.
    if isinstance(exc, requests.Timeout) or "timed out" in text.lower():
        return NoData(f"Prometheus at {url} did not answer within {timeout_s:g}s")
    errno = _ERRNO_TEXT.search(text)
    return NoData(_short(f"Prometheus at {url} unreachable: {errno.group(1) if errno else text}"))


def _short(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"
