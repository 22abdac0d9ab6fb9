"""params.yaml `export:`, `quantize:` and `evaluate:`: the deployable files and how they are measured."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from steps.config.base import Section as _Section


class ExportConfig(_Section):
    """PyTorch -> ONNX for every model, checked and compared with PyTorch on the test split."""

    exporter: Literal["torchscript", "dynamo"] = Field(
        default="torchscript", description="torch.onnx.export(dynamo=False) or the torch.export-based exporter")
    opset: int = Field(default=17, ge=13, le=20, description="ONNX opset (13+: per-channel int8; 20: exporter max)")
    parity_atol: float = Field(default=1e-4, gt=0, description="max |logit difference| ONNX Runtime vs PyTorch")
    parity_images: int | None = Field(default=None, ge=1, description="test images for the parity check; null = all")

    @model_validator(mode="after")
    def _dynamo_opset(self) -> ExportConfig:
        if self.exporter == "dynamo" and self.opset < 18:
            raise ValueError(f"the dynamo exporter needs opset >= 18 (got {self.opset})")
        return self


class QuantizeConfig(_Section):
    """ONNX Runtime int8 versions of the student, and which ONNX file is the deployable one."""

    methods: list[Literal["dynamic", "static"]] = Field(
        default_factory=list, description="int8 variants to build; empty = no quantization")
    calibration_images: int = Field(default=512, ge=1,
                                    description="static: a seeded slice of at most this many training images")
    eval_images: int | None = Field(default=None, ge=1, description="test images for int8 vs fp32; null = all")
    max_accuracy_drop: float = Field(default=0.01, ge=0, le=1,
                                     description="fp32 minus int8 accuracy allowed for the deployable file")
    deploy: Literal["fp32", "dynamic", "static"] = Field(
        default="fp32", description="the ONNX file registered as the deployable one")

    @model_validator(mode="after")
    def _deploy_is_built(self) -> QuantizeConfig:
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods lists a method twice: {self.methods}")
        if self.deploy != "fp32" and self.deploy not in self.methods:
            raise ValueError(f"deploy: {self.deploy} needs {self.deploy!r} in methods (methods: {self.methods})")
        return self


class EvaluateConfig(_Section):
    latency_backend: Literal["onnxruntime", "eager"] = Field(
        default="onnxruntime", description="which latency the table, the Pareto plot and the gates use")
    latency_batch_size: int = Field(ge=1)
    latency_warmup: int = Field(ge=0)
    latency_repeats: int = Field(ge=1, description="timed calls per model and batch in each window; with one "
                                 "window, >= 72 puts a 95% interval on p95 (fewer: the latency gate falls back on the "
                                 "slowest call)")
    prompts: list[str] = Field(default_factory=list, description="causal_lm: prompts the models continue greedily "
                               "in the report, for a person to read; empty = the openings of the first test documents")
    generation_tokens: int = Field(default=24, ge=1, description="causal_lm: tokens each prompt is continued by")
    latency_windows: int = Field(
        default=3, ge=1, description="timing windows for the ONNX files (what is deployed and gated): p95's interval "
        "spans how far the windows disagree, which one window cannot show (steps/core/latency.py)")
