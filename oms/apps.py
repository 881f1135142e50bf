from django.apps import AppConfig


class OmsConfig(AppConfig):
    name = "oms"
