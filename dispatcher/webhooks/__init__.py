"""Webhooks: per-user URLs the platform POSTs a signed JSON body to when a job ends.

==============  ================================================================================
``config``      :class:`WebhookConfig`: URL policy (https, public addresses) and retry timing
``targets``     URL checks and resolution: what may be called (SSRF), and the address to use
``registry``    users' webhooks and signing secrets (the dashboard's side)
``outbox``      delivery rows: written by the queue's terminal transitions, claimed, recorded
``delivery``    one attempt: the body, its ``X-Raas-Signature-256``, the POST
``worker``      :class:`DeliveryWorker`: the dispatcher's delivery threads, with backoff
==============  ================================================================================
"""


# Light on purpose (no peewee): ``raas dispatcher --help`` and ``raas config`` import this.
from dispatcher.webhooks.config import WebhookConfig
from dispatcher.webhooks.targets import UrlRefused

__all__ = ["UrlRefused", "WebhookConfig"]
