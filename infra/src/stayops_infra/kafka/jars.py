"""Find the JDK and resolve the Apache Kafka jars with Maven into a cache, once."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from stayops_infra.config import KAFKA_VERSION
from stayops_infra.errors import JavaNotFound, KafkaJarsMissing

MIN_JAVA_MAJOR = 17
_COMPLETE_MARKER = ".complete"
_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def find_java() -> str:
    """The `java` executable: JAVA_HOME first, then PATH; raises `JavaNotFound` if absent or old."""
    java_home = os.environ.get("JAVA_HOME")
    candidates = [str(Path(java_home) / "bin" / "java")] if java_home else []
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    for java in candidates:
        if Path(java).is_file() and os.access(java, os.X_OK):
            major = java_major_version(java)
            if major >= MIN_JAVA_MAJOR:
                return java
            raise JavaNotFound(
                f"{java} is Java {major}; Apache Kafka {KAFKA_VERSION} needs Java "
                f"{MIN_JAVA_MAJOR}+ (install e.g. openjdk-17-jre-headless)"
            )
    raise JavaNotFound(
        "no `java` found (JAVA_HOME or PATH); Apache Kafka needs Java "
        f"{MIN_JAVA_MAJOR}+ (install e.g. openjdk-17-jre-headless)"
    )


def java_major_version(java: str) -> int:
    result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    match = _JAVA_VERSION.search(result.stderr + result.stdout)
    if match is None:
        raise JavaNotFound(f"cannot tell the version of {java}: {result.stderr.strip()}")
    major = int(match.group(1))
    # Java 8 and older report "1.8.0_..."
    return int(match.group(2) or 0) if major == 1 else major


def kafka_libs(cache: Path) -> Path:
    return cache / "libs"


def jars_present(cache: Path) -> bool:
    libs = kafka_libs(cache)
    return (libs / _COMPLETE_MARKER).exists() and any(libs.glob(f"kafka_2.13-{KAFKA_VERSION}.jar"))


def ensure_kafka_jars(cache: Path) -> Path:
    """Resolve the broker jars into `<cache>/libs` with Maven unless they are already there."""
    libs = kafka_libs(cache)
    if jars_present(cache):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaJarsMissing(
            f"the Kafka jars are not in {libs} and `mvn` is not installed; install Maven "
            "(apt-get install maven) and run `stayops stack install`"
        )
    cache.mkdir(parents=True, exist_ok=True)
    if libs.exists():
        # Left over from an interrupted resolution without the marker: start again.
        shutil.rmtree(libs)
    # Resolve into a scratch folder and rename it into place, so that two processes
    # resolving at once never see a half-filled libs folder.
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=cache))
    with resources.as_file(resources.files(__package__).joinpath("pom.xml")) as pom:
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={staging}"],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise KafkaJarsMissing(
            f"Maven could not resolve the Kafka jars:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
        )
    (staging / _COMPLETE_MARKER).write_text(KAFKA_VERSION)
    try:
        staging.rename(libs)
    except OSError:
        # Another process won the race: its complete folder is as good as ours.
        shutil.rmtree(staging, ignore_errors=True)
        if not jars_present(cache):
            raise
    return libs
