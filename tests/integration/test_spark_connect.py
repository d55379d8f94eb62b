"""The warm Spark of the stack: the supervised Spark Connect server and the choice of runner."""

from __future__ import annotations

from tests.conftest import free_port
from tripflow import pipeline
from tripflow.config import Settings, SparkRunnerMode
from tripflow.services import spark_connect, stack


def test_stack_supervises_a_spark_connect_server_that_answers(connect_stack: Settings) -> None:
    states = {state.name: state for state in stack.services(connect_stack)}

    server = states["spark-connect"]
    assert server.state == "RUNNING"
    assert server.detail.startswith(f"{spark_connect.url(connect_stack)} (Spark 4.2.0)")
    assert spark_connect.healthy(connect_stack)
    # `up` ran the job once on the new server (its warm-up) and left no scratch behind.
    assert not (stack.run_directory(connect_stack) / "spark-warm-up").exists()


def test_ingest_runs_on_the_server_when_it_answers_else_with_spark_submit(
    connect_stack: Settings, settings: Settings
) -> None:
    on_stack = settings.model_copy(update={"spark_connect_port": connect_stack.spark_connect_port})
    alone = settings.model_copy(update={"spark_connect_port": free_port()})
    submit = on_stack.model_copy(update={"spark_runner": SparkRunnerMode.SUBMIT})

    chosen = pipeline.select_runner(on_stack)

    assert isinstance(chosen, pipeline.ConnectRunner)
    assert chosen.url == spark_connect.url(connect_stack)
    assert isinstance(pipeline.select_runner(alone), pipeline.SubmitRunner)
    assert isinstance(pipeline.select_runner(submit), pipeline.SubmitRunner)
