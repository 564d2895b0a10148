# Init container of the review page: wait until the workers have created the topics the
# page reads, so the page opens on the catalog rather than an empty list. (The page's
# readers themselves create no topic and wait for a missing one; see TopicFollower.)
# Listing the topics creates none. Settings (topics, Kafka address and security) come from the DIALIN_* variables.
# Libraries: kafka-python (admin client), the dialin package in the image.
import sys
import time

from kafka.admin import KafkaAdminClient

from dialin.streams.service.kafka_config import security_kwargs
from dialin.streams.settings import Settings

settings = Settings()
wanted = {settings.topic_updates, settings.topic_catalog, settings.topic_memory}
said = 0.0
while True:
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                 **security_kwargs(settings, "kafka-python"))
        try:
            missing = wanted - set(admin.list_topics())
        finally:
            admin.close()
    except Exception as exc:  # noqa: BLE001 - Kafka not reachable yet: try again
        missing, why = wanted, f"{type(exc).__name__}: {exc}"
    else:
        why = "the workers have not created them yet"
    if not missing:
        print("topics ready: " + ", ".join(sorted(wanted)), flush=True)
        sys.exit(0)
    if time.monotonic() - said >= 10:
        print("waiting for topics " + ", ".join(sorted(missing)) + f" ({why})", flush=True)
        said = time.monotonic()
    time.sleep(2)
