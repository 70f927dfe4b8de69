"""The public names the mirror can answer inside an air gap ([proxy] answer_for): where
unchanged code looks for models. tensorflow_hub reads `https://tfhub.dev/...`; kagglehub
1.x asks `https://api.kaggle.com/v1/models.ModelApiService/...` through kagglesdk, whose
endpoint cannot be pointed elsewhere; Kaggle's model pages and REST download are on
`www.kaggle.com` and `kaggle.com`. The site's DNS sends these names to the mirror and its
own CA vouches for the mirror's certificate."""

from __future__ import annotations

from mirror.core.kaggle import KAGGLE_HOSTS

TFHUB = "tfhub.dev"
KAGGLE_API = "api.kaggle.com"
PUBLIC_NAMES = (TFHUB, *KAGGLE_HOSTS, KAGGLE_API)


def bare_host(host_header: str) -> str:
    """A Host header's name, without its port, in lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):  # an IPv6 address: never one of the names
        return host
    return host.rsplit(":", 1)[0] if ":" in host else host
