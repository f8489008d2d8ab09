"""The Celery application.

Tasks take ids, never model instances or secrets, and are enqueued with ``delay_on_commit``
(the DjangoTask base provides it) so a rolled-back transaction sends nothing.
"""

from __future__ import annotations

import os

from celery import Celery

from rensei import broker_patch

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rensei.settings")

broker_patch.apply()

app = Celery("rensei", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
