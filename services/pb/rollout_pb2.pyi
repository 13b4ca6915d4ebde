from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RewardStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_STATUS_UNSPECIFIED: _ClassVar[RewardStatus]
    REWARD_STATUS_OK: _ClassVar[RewardStatus]
    REWARD_STATUS_TIMEOUT: _ClassVar[RewardStatus]
    REWARD_STATUS_ERROR: _ClassVar[RewardStatus]
    REWARD_STATUS_UNAVAILABLE: _ClassVar[RewardStatus]
REWARD_STATUS_UNSPECIFIED: RewardStatus
REWARD_STATUS_OK: RewardStatus
REWARD_STATUS_TIMEOUT: RewardStatus
REWARD_STATUS_ERROR: RewardStatus
REWARD_STATUS_UNAVAILABLE: RewardStatus

class TaskId(_message.Message):
    __slots__ = ("run_id", "prompt_id", "epoch")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    prompt_id: str
    epoch: int
    def __init__(self, run_id: _Optional[str] = ..., prompt_id: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class PromptTask(_message.Message):
    __slots__ = ("id", "prompt", "prompt_token_ids", "answer", "language", "source", "group_size", "min_policy_version", "stage", "temperature", "reward_weights", "top_logprobs", "metadata_json")
    class RewardWeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    REWARD_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    id: TaskId
    prompt: str
    prompt_token_ids: _containers.RepeatedScalarFieldContainer[int]
    answer: str
    language: str
    source: str
    group_size: int
    min_policy_version: int
    stage: str
    temperature: float
    reward_weights: _containers.ScalarMap[str, float]
    top_logprobs: int
    metadata_json: str
    def __init__(self, id: _Optional[_Union[TaskId, _Mapping]] = ..., prompt: _Optional[str] = ..., prompt_token_ids: _Optional[_Iterable[int]] = ..., answer: _Optional[str] = ..., language: _Optional[str] = ..., source: _Optional[str] = ..., group_size: _Optional[int] = ..., min_policy_version: _Optional[int] = ..., stage: _Optional[str] = ..., temperature: _Optional[float] = ..., reward_weights: _Optional[_Mapping[str, float]] = ..., top_logprobs: _Optional[int] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class RewardComponent(_message.Message):
    __slots__ = ("name", "value", "status", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    status: RewardStatus
    detail: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., status: _Optional[_Union[RewardStatus, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class TopLogprobs(_message.Message):
    __slots__ = ("token_ids", "logprobs")
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    logprobs: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, token_ids: _Optional[_Iterable[int]] = ..., logprobs: _Optional[_Iterable[float]] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("sample_index", "text", "completion_token_ids", "logprobs", "rewards", "total_reward", "status", "policy_version", "finish_reason", "top_logprobs")
    SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_REWARD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    sample_index: int
    text: str
    completion_token_ids: _containers.RepeatedScalarFieldContainer[int]
    logprobs: _containers.RepeatedScalarFieldContainer[float]
    rewards: _containers.RepeatedCompositeFieldContainer[RewardComponent]
    total_reward: float
    status: RewardStatus
    policy_version: int
    finish_reason: str
    top_logprobs: _containers.RepeatedCompositeFieldContainer[TopLogprobs]
    def __init__(self, sample_index: _Optional[int] = ..., text: _Optional[str] = ..., completion_token_ids: _Optional[_Iterable[int]] = ..., logprobs: _Optional[_Iterable[float]] = ..., rewards: _Optional[_Iterable[_Union[RewardComponent, _Mapping]]] = ..., total_reward: _Optional[float] = ..., status: _Optional[_Union[RewardStatus, str]] = ..., policy_version: _Optional[int] = ..., finish_reason: _Optional[str] = ..., top_logprobs: _Optional[_Iterable[_Union[TopLogprobs, _Mapping]]] = ...) -> None: ...

class ScoredGroup(_message.Message):
    __slots__ = ("id", "prompt", "prompt_token_ids", "completions", "policy_version", "worker_id", "generate_s", "score_s", "source", "answer", "stage", "dead_letter_reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATE_S_FIELD_NUMBER: _ClassVar[int]
    SCORE_S_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_REASON_FIELD_NUMBER: _ClassVar[int]
    id: TaskId
    prompt: str
    prompt_token_ids: _containers.RepeatedScalarFieldContainer[int]
    completions: _containers.RepeatedCompositeFieldContainer[Completion]
    policy_version: int
    worker_id: str
    generate_s: float
    score_s: float
    source: str
    answer: str
    stage: str
    dead_letter_reason: str
    def __init__(self, id: _Optional[_Union[TaskId, _Mapping]] = ..., prompt: _Optional[str] = ..., prompt_token_ids: _Optional[_Iterable[int]] = ..., completions: _Optional[_Iterable[_Union[Completion, _Mapping]]] = ..., policy_version: _Optional[int] = ..., worker_id: _Optional[str] = ..., generate_s: _Optional[float] = ..., score_s: _Optional[float] = ..., source: _Optional[str] = ..., answer: _Optional[str] = ..., stage: _Optional[str] = ..., dead_letter_reason: _Optional[str] = ...) -> None: ...

class WeightsAnnouncement(_message.Message):
    __slots__ = ("policy_version", "format", "num_bytes", "sha256", "buckets")
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    NUM_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    policy_version: int
    format: str
    num_bytes: int
    sha256: str
    buckets: _containers.RepeatedCompositeFieldContainer[WeightsBucket]
    def __init__(self, policy_version: _Optional[int] = ..., format: _Optional[str] = ..., num_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., buckets: _Optional[_Iterable[_Union[WeightsBucket, _Mapping]]] = ...) -> None: ...

class WeightsBucket(_message.Message):
    __slots__ = ("num_bytes", "sha256", "num_tensors")
    NUM_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    NUM_TENSORS_FIELD_NUMBER: _ClassVar[int]
    num_bytes: int
    sha256: str
    num_tensors: int
    def __init__(self, num_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., num_tensors: _Optional[int] = ...) -> None: ...
