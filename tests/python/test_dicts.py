"""Dict operators (spec A.1): shared handle semantics, tuples and images, get_dict_param, copies, errors with
HALCON's codes, JSON, python_interop round trips and read_dict/write_dict file round trips. The file tests that
need the C++ container (opendl._core.dict_write_file / dict_read_file) skip when this build lacks it; the
tree-level tests check what the Python side hands to and takes from the container without it."""

import json
import math
import struct
import zlib

import numpy as np
import pytest

import opendl as ha
from opendl import dicts

HAS_CONTAINER = all(hasattr(ha._core, n) for n in ("dict_write_file", "dict_read_file"))
needs_container = pytest.mark.skipif(not HAS_CONTAINER, reason="opendl._core lacks dict_write_file/dict_read_file")

DTYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.float32]


def code_of(excinfo):
    return excinfo.value.error_code


def image(dtype, shape, seed=0):
    r = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        a = r.standard_normal(shape).astype(dtype)
        a.flat[:3] = [np.nan, -0.0, np.inf]  # values whose bits a lossy path would change
        return a
    info = np.iinfo(dtype)
    return r.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def model_handle():
    # Any handle that is not a dict; the dict operators only look at its type.
    return ha.HHandle(object(), "dl_model")


def assert_same_dict(a, b, depth=0):
    """Same keys in the same order, same tuples (types and values; NaN equal to NaN), bit-identical images."""
    assert depth <= dicts.MAX_DEPTH
    keys = ha.get_dict_param(a, "keys", [])
    assert keys == ha.get_dict_param(b, "keys", [])
    assert [type(k) for k in keys] == [type(k) for k in ha.get_dict_param(b, "keys", [])]
    kinds = ha.get_dict_param(a, "key_data_type", keys) if keys else []
    assert kinds == (ha.get_dict_param(b, "key_data_type", keys) if keys else [])
    for k, kind in zip(keys, kinds):
        if kind == "object":
            x, y = ha.get_dict_object(a, k), ha.get_dict_object(b, k)
            assert x.dtype == y.dtype and x.shape == y.shape
            assert x.tobytes() == y.tobytes()
            continue
        x, y = ha.get_dict_tuple(a, k), ha.get_dict_tuple(b, k)
        assert len(x) == len(y)
        for u, v in zip(x, y):
            assert type(u) is type(v)
            if isinstance(u, ha.HHandle):
                assert_same_dict(u, v, depth + 1)
            elif isinstance(u, float) and math.isnan(u):
                assert math.isnan(v)
            else:
                assert u == v
                if isinstance(u, float):
                    assert math.copysign(1.0, u) == math.copysign(1.0, v)


# ---------------------------------------------------------------- handle semantics


def test_two_references_share_one_dict_and_handles_compare_by_identity():
    h = ha.create_dict()
    alias = h
    ha.set_dict_tuple(h, "a", 1)
    assert ha.get_dict_tuple(alias, "a") == [1]
    other = ha.create_dict()
    assert h == alias and h != other and hash(h) == hash(alias)
    assert len({h, alias, other}) == 2
    assert h.sem_type == "dict" and "type: dict" in repr(h)
    # A nested dict is a handle too: changing it after storing shows through the parent.
    child = ha.create_dict()
    ha.set_dict_tuple(h, "child", child)
    ha.set_dict_tuple(child, "x", 7)
    assert ha.get_dict_tuple(ha.get_dict_tuple_s(h, "child"), "x") == [7]
    assert ha.get_dict_tuple_s(h, "child") == child


def test_int_and_str_keys_are_distinct_and_order_is_insertion_order():
    h = ha.create_dict()
    ha.set_dict_tuple(h, "b", "B")
    ha.set_dict_tuple(h, 1, "int one")
    ha.set_dict_tuple(h, "1", "str one")
    ha.set_dict_tuple(h, "a", "A")
    ha.set_dict_tuple(h, "b", "B2")  # replacing keeps the position
    assert ha.get_dict_param(h, "keys", []) == ["b", 1, "1", "a"]
    assert ha.get_dict_tuple(h, 1) == ["int one"]
    assert ha.get_dict_tuple(h, "1") == ["str one"]
    assert ha.get_dict_tuple(h, np.int64(1)) == ["int one"]
    assert ha.get_dict_tuple(h, "b") == ["B2"]


def test_scalars_are_one_element_tuples_and_s_twins_need_exactly_one():
    h = ha.create_dict()
    ha.set_dict_tuple(h, "s", 5)
    ha.set_dict_tuple(h, "str", "text")
    ha.set_dict_tuple(h, "l", [1, 2.5, "x"])
    ha.set_dict_tuple(h, "t", (3,))
    ha.set_dict_tuple(h, "e", [])
    assert ha.get_dict_tuple(h, "s") == [5] and ha.get_dict_tuple_s(h, "s") == 5
    assert ha.get_dict_tuple(h, "str") == ["text"]
    assert ha.get_dict_tuple(h, "l") == [1, 2.5, "x"]
    assert ha.get_dict_tuple_s(h, "t") == 3
    assert ha.get_dict_tuple(h, "e") == []
    with pytest.raises(ha.HTupleConversionError):
        ha.get_dict_tuple_s(h, "l")
    with pytest.raises(ha.HTupleConversionError):
        ha.get_dict_tuple_s(h, "e")


def test_returned_tuples_are_copies():
    h = ha.create_dict()
    ha.set_dict_tuple(h, "l", [1, 2])
    got = ha.get_dict_tuple(h, "l")
    got.append(3)
    assert ha.get_dict_tuple(h, "l") == [1, 2]
    source = [4, 5]
    ha.set_dict_tuple(h, "m", source)
    source.append(6)
    assert ha.get_dict_tuple(h, "m") == [4, 5]


def test_numpy_scalars_and_bools_become_python_numbers():
    h = ha.create_dict()
    ha.set_dict_tuple(h, "i", np.int64(3))
    ha.set_dict_tuple(h, "f", np.float32(0.1))
    ha.set_dict_tuple(h, "b", True)
    ha.set_dict_tuple(h, "arr", np.array([1, 2], dtype=np.uint8))
    ha.set_dict_tuple(h, "zero_d", np.array(2.5))
    ha.set_dict_tuple(h, "mixed", [np.int16(-2), np.float64(1.5), np.str_("s")])
    i, f, b = ha.get_dict_tuple_s(h, "i"), ha.get_dict_tuple_s(h, "f"), ha.get_dict_tuple_s(h, "b")
    assert type(i) is int and i == 3
    assert type(f) is float and f == float(np.float32(0.1))  # the float32 value, exactly
    assert type(b) is int and b == 1
    assert [type(v) for v in ha.get_dict_tuple(h, "arr")] == [int, int]
    assert ha.get_dict_tuple(h, "arr") == [1, 2]
    assert ha.get_dict_tuple(h, "zero_d") == [2.5]
    mixed = ha.get_dict_tuple(h, "mixed")
    assert mixed == [-2, 1.5, "s"] and [type(v) for v in mixed] == [int, float, str]


def test_invalid_tuple_elements_raise_conversion_errors():
    h = ha.create_dict()
    for bad in ([1, [2, 3]], [None], [b"bytes"], np.zeros((2, 2), np.uint8), 1 << 63, [object()]):
        with pytest.raises(ha.HTupleConversionError) as e:
            ha.set_dict_tuple(h, "k", bad)
        # also an HOperatorError naming the operator and the parameter at fault (tuple = parameter 3)
        assert isinstance(e.value, ha.HOperatorError) and e.value.error_code == 1203
        assert e.value.operator_name == "set_dict_tuple" and "tuple" in str(e.value)
    assert ha.get_dict_param(h, "keys", []) == []  # nothing was stored
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dict_tuple_at(h, "k", [0], [[1]])
    assert e.value.error_code == 1204


def test_a_plain_dict_element_becomes_a_nested_dict_handle():
    h = ha.create_dict()
    ha.set_dict_tuple(h, "p", {"lr": 0.1})
    child = ha.get_dict_tuple_s(h, "p")
    assert isinstance(child, ha.HHandle) and child.sem_type == "dict"
    assert ha.get_dict_tuple(child, "lr") == [0.1]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3)])
def test_images_of_every_dtype_are_kept_bit_exactly_without_copy(dtype, shape):
    h = ha.create_dict()
    img = image(dtype, shape)
    expected = img.copy()
    ha.set_dict_object(img, h, "image")
    got = ha.get_dict_object(h, "image")
    assert got.dtype == np.dtype(dtype) and got.shape == shape
    assert got.tobytes() == expected.tobytes()
    assert np.shares_memory(got, img)  # stored without copying
    assert not got.flags.writeable  # and handed out read-only
    assert ha.get_dict_param(h, "key_data_type", "image") == ["object"]


@pytest.mark.parametrize("bad, named", [
    (np.zeros((2, 2), np.float64), "float64"), (np.zeros((2, 2), bool), "bool"), (np.zeros((2, 2), np.int64), "int64"),
    (np.zeros(4, np.uint8), "(4,)"), (np.zeros((1, 2, 3, 4), np.uint8), "(1, 2, 3, 4)"),
    (np.zeros((0, 3), np.uint8), "(0, 3)"), ([[1, 2]], "list")])
def test_unsupported_images_raise_1201_naming_the_problem(bad, named):
    h = ha.create_dict()
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dict_object(bad, h, "image")
    assert code_of(e) == 1201 and named in e.value.message
    assert ha.get_dict_param(h, "key_exists", "image") == [0]


def test_nested_dicts_three_deep():
    root, mid, leaf = ha.create_dict(), ha.create_dict(), ha.create_dict()
    ha.set_dict_tuple(leaf, "v", [1, 2])
    ha.set_dict_tuple(mid, "leaf", leaf)
    ha.set_dict_tuple(root, "mid", mid)
    got_mid = ha.get_dict_tuple_s(root, "mid")
    got_leaf = ha.get_dict_tuple_s(got_mid, "leaf")
    assert got_leaf == leaf and ha.get_dict_tuple(got_leaf, "v") == [1, 2]
    assert ha.get_dict_param(root, "key_data_type", "mid") == ["tuple"]


# ---------------------------------------------------------------- get_dict_param and errors


def test_get_dict_param_modes():
    h = ha.create_dict()
    ha.set_dict_tuple(h, "t", 1)
    ha.set_dict_object(np.zeros((2, 2), np.uint8), h, 5)
    assert ha.get_dict_param(h, "keys", []) == ["t", 5]
    assert ha.get_dict_param(h, "key_exists", ["t", "nope", 5, "5"]) == [1, 0, 1, 0]
    assert ha.get_dict_param(h, "key_data_type", [5, "t"]) == ["object", "tuple"]
    assert ha.get_dict_param_s(h, "key_exists", "t") == 1
    assert ha.get_dict_param(ha.create_dict(), "keys", []) == []


def test_get_dict_param_errors():
    h = ha.create_dict()
    ha.set_dict_tuple(h, "t", 1)
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dict_param(h, "keys", "t")
    assert code_of(e) == 1403
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dict_param(h, "size", [])
    assert code_of(e) == 1302 and "size" in e.value.message
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dict_param(h, "key_data_type", "absent")
    assert code_of(e) == 2894 and "absent" in e.value.message
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dict_param(h, "key_exists", 1.5)
    assert code_of(e) == 1203 and "key" in e.value.message


def test_missing_keys_and_wrong_kinds():
    h = ha.create_dict()
    ha.set_dict_tuple(h, "t", 1)
    ha.set_dict_object(np.zeros((2, 2), np.uint8), h, "img")
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dict_tuple(h, "missing_key")
    assert code_of(e) == 2894 and "missing_key" in e.value.message and e.value.operator_name == "get_dict_tuple"
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dict_tuple(h, "img")
    assert code_of(e) == 2896 and "get_dict_object" in e.value.message
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dict_object(h, "t")
    assert code_of(e) == 2896 and "get_dict_tuple" in e.value.message
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dict_object(h, "missing_key")
    assert code_of(e) == 2894


@pytest.mark.parametrize("bad_key", [1.5, True, object(), b"k", ("a", 1.0), ("a", None)])
def test_keys_must_be_str_or_int(bad_key):
    h = ha.create_dict()
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dict_tuple(h, bad_key if not isinstance(bad_key, tuple) else list(bad_key), 1)
    assert code_of(e) == 1202 and "key" in e.value.message
    assert ha.get_dict_param(h, "keys", []) == []  # a bad key in a list stores none of them
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dict_object(np.zeros((2, 2), np.uint8), h, 1.5)
    assert code_of(e) == 1202


def test_empty_or_several_keys_where_one_is_needed():
    h = ha.create_dict()
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dict_tuple(h, [])
    assert code_of(e) == 1402
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dict_object(np.zeros((2, 2), np.uint8), h, ["a", "b"])
    assert code_of(e) == 1402


def test_set_dict_tuple_with_several_keys_sets_independent_copies():
    h = ha.create_dict()
    ha.set_dict_tuple(h, ["a", 2, "c"], [1, 2])
    assert ha.get_dict_param(h, "keys", []) == ["a", 2, "c"]
    ha.set_dict_tuple_at(h, "a", 0, 9)
    assert ha.get_dict_tuple(h, "a") == [9, 2] and ha.get_dict_tuple(h, 2) == [1, 2]
    assert ha.get_dict_tuple(h, ["a", "c"]) == [9, 2, 1, 2]  # several keys: tuples concatenated


def test_set_dict_tuple_at():
    h = ha.create_dict()
    ha.set_dict_tuple(h, "t", [10, 20, 30])
    ha.set_dict_tuple_at(h, "t", 1, 21)
    assert ha.get_dict_tuple(h, "t") == [10, 21, 30]
    ha.set_dict_tuple_at(h, "t", [0, 2], ["a", "c"])
    assert ha.get_dict_tuple(h, "t") == ["a", 21, "c"]
    ha.set_dict_tuple_at(h, "t", [0, 1], 0.5)  # one value goes to every index
    assert ha.get_dict_tuple(h, "t") == [0.5, 0.5, "c"]
    ha.set_dict_tuple_at(h, "t", 3, "appended")
    assert ha.get_dict_tuple(h, "t") == [0.5, 0.5, "c", "appended"]
    ha.set_dict_tuple_at(h, "t", 6, 7)  # a gap is filled with 0, as assign_at does
    assert ha.get_dict_tuple(h, "t") == [0.5, 0.5, "c", "appended", 0, 0, 7]
    ha.set_dict_tuple_at(h, "new", 1, "x")  # an absent key starts empty
    assert ha.get_dict_tuple(h, "new") == [0, "x"]


def test_set_dict_tuple_at_errors():
    h = ha.create_dict()
    ha.set_dict_tuple(h, "t", [1, 2])
    ha.set_dict_object(np.zeros((2, 2), np.uint8), h, "img")
    cases = [((h, "t", -1, 5), 2897), ((h, "t", [0, 1], [1, 2, 3]), 1404), ((h, "img", 0, 1), 2896),
             ((h, "t", 0.5, 1), 1203), ((h, "t", [0, 1], []), 1404)]
    for args, code in cases:
        with pytest.raises(ha.HOperatorError) as e:
            ha.set_dict_tuple_at(*args)
        assert code_of(e) == code, args
    assert ha.get_dict_tuple(h, "t") == [1, 2]


def test_remove_dict_key():
    h = ha.create_dict()
    ha.set_dict_tuple(h, ["a", "b", 3, "d"], 0)
    ha.remove_dict_key(h, ["b", 3])
    ha.remove_dict_key(h, "not there")  # absent keys are ignored
    assert ha.get_dict_param(h, "keys", []) == ["a", "d"]
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dict_tuple(h, "b")
    assert code_of(e) == 2894


def test_clear_handle_then_use_raises_2450():
    h, g = ha.create_dict(), ha.create_dict()
    ha.set_dict_tuple(h, "a", 1)
    ha.clear_handle([h, g])
    for call in (lambda: ha.get_dict_tuple(h, "a"), lambda: ha.set_dict_tuple(g, "a", 1),
                 lambda: ha.get_dict_param(h, "keys", []), lambda: ha.copy_dict(h, [], []),
                 lambda: ha.as_python_dict(h)):
        with pytest.raises(ha.HOperatorError) as e:
            call()
        assert code_of(e) == 2450
    ha.clear_handle(h)  # clearing twice is harmless
    m = model_handle()
    ha.clear_handle(m)  # any handle type
    with pytest.raises(ha.HOperatorError) as e:
        m.core("test")
    assert code_of(e) == 2450
    with pytest.raises(ha.HOperatorError) as e:
        ha.clear_handle("not a handle")
    assert code_of(e) == 1201


def test_dict_operators_check_the_handle_type():
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dict_tuple(model_handle(), "a")
    assert code_of(e) == 2450 and "dl_model" in e.value.message
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dict_tuple({"a": 1}, "a", 2)  # a mutator cannot work on a temporary copy of a plain dict
    assert code_of(e) == 1201 and "from_python_dict" in e.value.message


# ---------------------------------------------------------------- copy_dict


def test_copy_dict_is_deep_for_dicts_and_shares_images():
    h, child = ha.create_dict(), ha.create_dict()
    img = image(np.uint8, (4, 4))
    ha.set_dict_tuple(child, "x", 1)
    ha.set_dict_tuple(h, "child", child)
    ha.set_dict_tuple(h, "twice", [child, child])
    ha.set_dict_tuple(h, "n", [1, 2])
    ha.set_dict_object(img, h, "img")
    c = ha.copy_dict(h, [], [])
    assert c != h
    assert_same_dict(c, h)
    copied_child = ha.get_dict_tuple_s(c, "child")
    assert copied_child != child
    assert ha.get_dict_tuple(c, "twice") == [copied_child, copied_child]  # one dict reached twice: one copy
    ha.set_dict_tuple(child, "x", 2)
    ha.set_dict_tuple(h, "n", 3)
    assert ha.get_dict_tuple(copied_child, "x") == [1]
    assert ha.get_dict_tuple(c, "n") == [1, 2]
    assert np.shares_memory(ha.get_dict_object(c, "img"), img)
    plain = ha.copy_dict({"a": {"b": 1}}, [], [])  # a plain dict is accepted too
    assert ha.as_python_dict_s(plain) == {"a": {"b": 1}}


def test_copy_dict_with_uncopyable_handles_and_cycles():
    h = ha.create_dict()
    ha.set_dict_tuple(h, "model", model_handle())
    ha.set_dict_tuple(h, "keep", 1)
    with pytest.raises(ha.HOperatorError) as e:
        ha.copy_dict(h, [], [])
    assert code_of(e) == 2455 and "model" in e.value.message
    c = ha.copy_dict(h, "raise_error_if_content_not_serializable", "false")
    empty = ha.get_dict_tuple_s(c, "model")
    assert isinstance(empty, ha.HHandle) and empty.sem_type == "dl_model"
    with pytest.raises(ha.HOperatorError) as e:
        empty.core("test")  # an empty handle in its place
    assert code_of(e) == 2450
    assert ha.get_dict_tuple(c, "keep") == [1]
    loop = ha.create_dict()
    inner = ha.create_dict()
    ha.set_dict_tuple(loop, "inner", inner)
    ha.set_dict_tuple(inner, "back", loop)
    with pytest.raises(ha.HOperatorError) as e:
        ha.copy_dict(loop, "raise_error_if_content_not_serializable", "false")
    assert code_of(e) == 2456


def test_copy_dict_generic_parameter_errors():
    h = ha.create_dict()
    for names, values, code in ((["copy_tuples"], ["true"], 1302),
                                (["raise_error_if_content_not_serializable"], ["maybe"], 1303),
                                (["raise_error_if_content_not_serializable"], [], 1403)):
        with pytest.raises(ha.HOperatorError) as e:
            ha.copy_dict(h, names, values)
        assert code_of(e) == code


# ---------------------------------------------------------------- JSON


def test_dict_to_json_mapping():
    h = ha.create_dict()
    ha.set_dict_tuple(h, "a", 1)
    ha.set_dict_tuple(h, "b", [1, 2.5])
    ha.set_dict_tuple(h, "c", "x\u00e9\u6f22")
    ha.set_dict_tuple(h, "d", [])
    ha.set_dict_tuple(h, 7, "int key")
    child = ha.create_dict()
    ha.set_dict_tuple(child, "f", -0.5)
    ha.set_dict_tuple(h, "e", child)
    arr = ha.create_dict()
    ha.set_dict_tuple(arr, 0, "zero")
    ha.set_dict_tuple(arr, 1, [1, 2])
    ha.set_dict_tuple(h, "arr", arr)
    ha.set_dict_tuple(h, "dicts", [child, child])
    assert ha.dict_to_json_s(h, [], []) == ('{"a":1,"b":[1,2.5],"c":"x\u00e9\u6f22","d":[],"7":"int key",'
                                           '"e":{"f":-0.5},"arr":["zero",[1,2]],"dicts":[{"f":-0.5},{"f":-0.5}]}')
    assert ha.dict_to_json([h, ha.create_dict()], [], [])[1] == "{}"
    with pytest.raises(ha.HTupleConversionError):
        ha.dict_to_json_s([h, h], [], [])


def test_dict_to_json_refuses_what_json_cannot_hold():
    h = ha.create_dict()
    ha.set_dict_tuple(h, "keep", 1)
    ha.set_dict_object(np.zeros((2, 2), np.uint8), h, "img")
    with pytest.raises(ha.HOperatorError) as e:
        ha.dict_to_json(h, [], [])
    assert code_of(e) == 2455 and "img" in e.value.message
    assert ha.dict_to_json_s(h, "raise_error_if_content_not_serializable", "false") == '{"keep":1}'
    g = ha.create_dict()
    ha.set_dict_tuple(g, "m", model_handle())
    with pytest.raises(ha.HOperatorError) as e:
        ha.dict_to_json(g, [], [])
    assert code_of(e) == 2455 and "dl_model" in e.value.message
    nan = ha.create_dict()
    ha.set_dict_tuple(nan, "loss", float("nan"))
    with pytest.raises(ha.HOperatorError) as e:
        ha.dict_to_json(nan, [], [])
    assert code_of(e) == 1301 and "loss" in e.value.message
    clash = ha.create_dict()
    ha.set_dict_tuple(clash, [1, "1"], 0)
    with pytest.raises(ha.HOperatorError) as e:
        ha.dict_to_json(clash, [], [])
    assert code_of(e) == 1301
    loop = ha.create_dict()
    ha.set_dict_tuple(loop, "self", loop)
    with pytest.raises(ha.HOperatorError) as e:
        ha.dict_to_json(loop, [], [])
    assert code_of(e) == 2456
    with pytest.raises(ha.HOperatorError) as e:
        ha.dict_to_json(h, "indent", 2)
    assert code_of(e) == 1302


def test_json_to_dict_defaults():
    text = '{"n":1,"r":2.5,"s":"\u00fc","t":true,"f":false,"z":null,"a":[1,"x",{"k":2},[3]],"o":{"p":[]}}'
    h = ha.json_to_dict_s(text, [], [])
    assert ha.get_dict_param(h, "keys", []) == ["n", "r", "s", "t", "f", "z", "a", "o"]
    assert ha.as_python_dict(h) == {"n": [1], "r": [2.5], "s": ["\u00fc"], "t": [1], "f": [0], "z": [],
                                    "a": [{0: [1], 1: ["x"], 2: [{"k": [2]}], 3: [{0: [3]}]}], "o": [{"p": [{}]}]}
    assert type(ha.get_dict_tuple_s(h, "n")) is int and type(ha.get_dict_tuple_s(h, "r")) is float
    top = ha.json_to_dict_s("[5, 6]", [], [])
    assert ha.as_python_dict(top) == {0: [5], 1: [6]}


def test_json_to_dict_parameters():
    text = '{"a":[1,"x",{"k":2},[3,4],null,true],"t":true,"f":false,"z":null}'
    h = ha.json_to_dict_s(text, ["convert_json_arrays_to", "json_value_true", "json_value_false",
                                 "json_value_null"], ["tuple", "yes", "no", -1])
    got = ha.as_python_dict(h)
    assert got == {"a": [1, "x", {"k": [2]}, {0: [3], 1: [4]}, -1, "yes"], "t": ["yes"], "f": ["no"], "z": [-1]}
    handles = ha.json_to_dict(['{"a":1}', '{"b":2}'], [], [])
    assert [ha.get_dict_param(x, "keys", []) for x in handles] == [["a"], ["b"]]


def test_json_to_dict_errors():
    for text in ('{"a":', "[1,]", "42", '"just a string"'):
        with pytest.raises(ha.HOperatorError) as e:
            ha.json_to_dict(text, [], [])
        assert code_of(e) == 1301, text
    with pytest.raises(ha.HOperatorError) as e:
        ha.json_to_dict(5, [], [])
    assert code_of(e) == 1201
    with pytest.raises(ha.HOperatorError) as e:
        ha.json_to_dict("{}", "convert_json_arrays_to", "list")
    assert code_of(e) == 1303
    with pytest.raises(ha.HOperatorError) as e:
        ha.json_to_dict("[" * 300 + "]" * 300, [], [])
    assert code_of(e) == 2899


def test_json_round_trip():
    src = {"name": "n\u00e4me", "ints": [1, -2, 2 ** 62], "reals": [0.1, -1e-300, 1e300], "one": 3,
           "nested": {"deeper": {"deepest": ["a", "b"]}}, "list_of_dicts": [{"i": 0}, {"i": 1}], "empty": [],
           "empty_dict": {}}
    h = ha.from_python_dict(src)
    text = ha.dict_to_json_s(h, [], [])
    assert json.loads(text)["nested"] == {"deeper": {"deepest": ["a", "b"]}}
    back = ha.json_to_dict_s(text, "convert_json_arrays_to", "tuple")
    assert_same_dict(back, h)
    assert ha.dict_to_json_s(back, [], []) == text


# ---------------------------------------------------------------- python interop


def test_from_python_dict_and_as_python_dict_round_trip():
    img = image(np.float32, (3, 4, 2))
    src = {"a": 1, "b": [1, 2.5, "x"], "c": {"d": "e"}, 3: img, "l": [{"x": 1}, 2], "e": [], "n": None,
           "t": (1, 2), "arr": np.array([4, 5], np.int32)}
    snapshot = repr(src)
    h = ha.from_python_dict(src)
    assert repr(src) == snapshot  # the input is not changed
    assert ha.get_dict_param(h, "keys", []) == ["a", "b", "c", 3, "l", "e", "n", "t", "arr"]
    assert ha.get_dict_param(h, "key_data_type", 3) == ["object"]
    back = ha.as_python_dict(h)
    assert back.keys() == src.keys()
    assert back["a"] == [1] and back["b"] == [1, 2.5, "x"] and back["c"] == [{"d": ["e"]}]
    assert back[3].tobytes() == img.tobytes() and back[3].dtype == np.float32
    assert back["l"] == [{"x": [1]}, 2] and back["e"] == [] and back["n"] == [] and back["t"] == [1, 2]
    assert back["arr"] == [4, 5] and [type(v) for v in back["arr"]] == [int, int]
    assert ha.from_python_dict({}) != ha.from_python_dict({})


def test_as_python_dict_s_and_hooks():
    h = ha.from_python_dict({"a": 1, "c": {"d": "e"}, "img": np.zeros((2, 2), np.uint8)})
    assert ha.as_python_dict_s(h, lambda o: o.shape) == {"a": 1, "c": {"d": "e"}, "img": (2, 2)}
    ha.set_dict_tuple(h, "two", [1, 2])
    with pytest.raises(ha.HTupleConversionError):
        ha.as_python_dict_s(h)

    class Point:
        def __init__(self, x):
            self.x = x

    seen = []

    def hook(v):
        seen.append(v.x)
        return v.x

    g = ha.from_python_dict({"p": Point(1), "ps": [Point(2), 3]}, hook)
    assert ha.as_python_dict(g) == {"p": [1], "ps": [2, 3]} and seen == [1, 2]
    with pytest.raises(ha.HTupleConversionError):
        ha.from_python_dict({"p": Point(1)})


def test_from_python_dict_refusals():
    img = np.zeros((2, 2), np.uint8)
    for bad in ({"k": [[1, 2]]}, {"k": [img, img]}, {"k": [1, img]}):
        with pytest.raises(ha.HError):
            ha.from_python_dict(bad)
    with pytest.raises(ha.HOperatorError) as e:
        ha.from_python_dict({1.5: 1})
    assert code_of(e) == 1202
    loop = {"a": 1}
    loop["self"] = loop
    with pytest.raises(ha.HOperatorError) as e:
        ha.from_python_dict(loop)
    assert code_of(e) == 2456
    with pytest.raises(ha.HOperatorError) as e:
        ha.from_python_dict([1, 2])
    assert code_of(e) == 1201


def test_as_python_dict_detects_cycles():
    h = ha.create_dict()
    ha.set_dict_tuple(h, "self", h)
    with pytest.raises(ha.HOperatorError) as e:
        ha.as_python_dict(h)
    assert code_of(e) == 2456


def test_as_dict_handle():
    h = ha.create_dict()
    assert ha.as_dict_handle(h, "op", "param") is h
    converted = ha.as_dict_handle({"a": [1, 2]}, "op", "param")
    assert isinstance(converted, ha.HHandle) and ha.get_dict_tuple(converted, "a") == [1, 2]
    with pytest.raises(ha.HOperatorError) as e:
        ha.as_dict_handle([1], "some_op", "dlsample")
    assert code_of(e) == 1201 and "dlsample" in e.value.message and e.value.operator_name == "some_op"
    with pytest.raises(ha.HOperatorError) as e:
        ha.as_dict_handle(model_handle(), "some_op", "dlsample")
    assert code_of(e) == 2450


# ---------------------------------------------------------------- files: what the container gets and gives


def test_write_dict_hands_the_container_a_plain_tree(tmp_path, monkeypatch):
    got = {}
    monkeypatch.setattr(ha._core, "dict_write_file", lambda path, tree: got.update(path=path, tree=tree),
                        raising=False)
    h, child = ha.create_dict(), ha.create_dict()
    strided = image(np.uint16, (6, 8))[:, ::2]  # not C-contiguous
    ha.set_dict_tuple(child, 1, ["x", 2.5])
    ha.set_dict_tuple(h, "child", [child, 3])
    ha.set_dict_object(strided, h, "img")
    ha.set_dict_tuple(h, "model", model_handle())
    ha.set_dict_tuple(h, "after", "kept")
    ha.write_dict(h, str(tmp_path / "x.hdict"), "raise_error_if_content_not_serializable", "false")
    tree = got["tree"]
    assert got["path"] == str(tmp_path / "x.hdict")
    assert list(tree) == ["child", "img", "after"]  # the key with a model handle is left out
    assert tree["child"] == [{1: ["x", 2.5]}, 3] and tree["after"] == ["kept"]
    assert tree["img"].flags.c_contiguous and np.array_equal(tree["img"], strided)


def test_read_dict_turns_the_tree_into_handles(tmp_path, monkeypatch):
    path = tmp_path / "x.hdict"
    path.write_bytes(b"OPENDLC\0 not read by the fake")
    img = image(np.int16, (3, 3))
    monkeypatch.setattr(ha._core, "dict_read_file",
                        lambda p: {"a": [1, "s"], 2: [{"inner": [0.5]}], "img": img}, raising=False)
    h = ha.read_dict(str(path), [], [])
    assert ha.get_dict_param(h, "keys", []) == ["a", 2, "img"]
    inner = ha.get_dict_tuple_s(h, 2)
    assert inner.sem_type == "dict" and ha.get_dict_tuple(inner, "inner") == [0.5]
    assert not ha.get_dict_object(h, "img").flags.writeable


def test_container_errors_carry_the_operator_name(tmp_path, monkeypatch):
    path = tmp_path / "x.hdict"
    path.write_bytes(b"junk")

    def failing(p):
        raise ha.HOperatorError(5238, "checksum mismatch")

    monkeypatch.setattr(ha._core, "dict_read_file", failing, raising=False)
    with pytest.raises(ha.HOperatorError) as e:
        ha.read_dict(str(path), [], [])
    assert code_of(e) == 5238 and e.value.operator_name == "read_dict" and "checksum" in e.value.message


def test_write_dict_refusals_before_any_file_is_touched(tmp_path):
    target = tmp_path / "x.hdict"
    h = ha.create_dict()
    ha.set_dict_tuple(h, "model", model_handle())
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_dict(h, str(target), [], [])
    assert code_of(e) == 2455 and "model" in e.value.message and e.value.operator_name == "write_dict"
    cleared = ha.create_dict()
    ha.clear_handle(cleared)
    g = ha.create_dict()
    ha.set_dict_tuple(g, "gone", cleared)
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_dict(g, str(target), [], [])
    assert code_of(e) == 2455 and "gone" in e.value.message
    loop = ha.create_dict()
    ha.set_dict_tuple(loop, "self", loop)
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_dict(loop, str(target), "raise_error_if_content_not_serializable", "false")
    assert code_of(e) == 2456
    for names, values, code in (("compression", "zip", 1303), ("file_type", "xml", 1304), ("file_type", [], 1404)):
        with pytest.raises(ha.HOperatorError) as e:
            ha.write_dict(ha.create_dict(), str(target), names, values)
        assert code_of(e) == code
    assert not target.exists()


def test_read_dict_missing_file_raises_5200(tmp_path):
    with pytest.raises(ha.HOperatorError) as e:
        ha.read_dict(str(tmp_path / "absent.hdict"), [], [])
    assert code_of(e) == 5200 and e.value.operator_name == "read_dict"


def test_json_files_round_trip_and_extension_lookup(tmp_path):
    h = ha.from_python_dict({"a": 1, "b": ["x", 2.5], "c": {"d": [1, 2]}})
    ha.write_dict(h, str(tmp_path / "cfg.json"), [], [])
    assert json.loads((tmp_path / "cfg.json").read_text(encoding="utf-8")) == {"a": 1, "b": ["x", 2.5],
                                                                             "c": {"d": [1, 2]}}
    back = ha.read_dict(str(tmp_path / "cfg"), "convert_json_arrays_to", "tuple")  # '.json' appended
    assert_same_dict(back, h)
    ha.write_dict(h, str(tmp_path / "forced.txt"), "file_type", "json")
    assert_same_dict(ha.read_dict(str(tmp_path / "forced.txt"), "convert_json_arrays_to", "tuple"), h)
    (tmp_path / "broken.json").write_text('{"a": ', encoding="utf-8")
    with pytest.raises(ha.HOperatorError) as e:
        ha.read_dict(str(tmp_path / "broken.json"), [], [])
    assert code_of(e) == 5238
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_dict(h, str(tmp_path / "no_dir" / "x.json"), [], [])
    assert code_of(e) == 3142


# ---------------------------------------------------------------- files through the C++ container


def every_kind():
    h = ha.create_dict()
    for n, dtype in enumerate(DTYPES):
        ha.set_dict_object(image(dtype, (5, 7), seed=n), h, f"img2d_{np.dtype(dtype).name}")
        ha.set_dict_object(image(dtype, (4, 3, 3), seed=n), h, f"img3d_{np.dtype(dtype).name}")
    ha.set_dict_tuple(h, 0, "int key zero")
    ha.set_dict_tuple(h, -(2 ** 63), "most negative int key")
    ha.set_dict_tuple(h, "ints", [0, 1, -1, 2 ** 63 - 1, -(2 ** 63)])
    ha.set_dict_tuple(h, "reals", [0.1, -0.0, float("inf"), float("-inf"), float("nan"), 5e-324,
                                   1.7976931348623157e308])
    ha.set_dict_tuple(h, "mixed", [1, "two", 3.0])
    ha.set_dict_tuple(h, "empty", [])
    ha.set_dict_tuple(h, "unicode \u00e4\u00f6\u00fc \u6f22\u5b57 \U0001f600", ["\u00df", "", "\u6f22\U0001f600"])
    ha.set_dict_tuple(h, "empty dict", ha.create_dict())
    level1, level2, level3 = ha.create_dict(), ha.create_dict(), ha.create_dict()
    ha.set_dict_tuple(level3, "leaf", [1, 2, 3])
    ha.set_dict_object(image(np.float32, (2, 2)), level3, "leaf_img")
    ha.set_dict_tuple(level2, "level3", [level3, "after the dict"])
    ha.set_dict_tuple(level1, 7, level2)
    ha.set_dict_tuple(h, "nested", level1)
    return h


@needs_container
def test_file_round_trip_of_every_value_kind(tmp_path):
    h = every_kind()
    path = str(tmp_path / "all.hdict")
    ha.write_dict(h, path, [], [])
    back = ha.read_dict(path, [], [])
    assert_same_dict(back, h)
    assert_same_dict(ha.read_dict(str(tmp_path / "all"), [], []), h)  # '.hdict' appended when absent


@needs_container
def test_file_round_trip_of_empty_dict_and_large_image(tmp_path):
    ha.write_dict(ha.create_dict(), str(tmp_path / "empty.hdict"), [], [])
    assert ha.get_dict_param(ha.read_dict(str(tmp_path / "empty.hdict"), [], []), "keys", []) == []
    big = ha.create_dict()
    ha.set_dict_object(image(np.uint8, (2048, 2048, 3)), big, "image")  # 12 MiB
    ha.write_dict(big, str(tmp_path / "big.hdict"), [], [])
    assert_same_dict(ha.read_dict(str(tmp_path / "big.hdict"), [], []), big)


@needs_container
def test_file_skips_unserialisable_keys_when_asked(tmp_path):
    h = ha.create_dict()
    ha.set_dict_tuple(h, "before", 1)
    ha.set_dict_tuple(h, "model", [1, model_handle()])
    ha.set_dict_tuple(h, "after", 2)
    path = str(tmp_path / "x.hdict")
    ha.write_dict(h, path, "raise_error_if_content_not_serializable", "false")
    assert ha.as_python_dict(ha.read_dict(path, [], [])) == {"before": [1], "after": [2]}


@needs_container
def test_corrupt_and_truncated_files_raise_5238(tmp_path):
    path = tmp_path / "x.hdict"
    ha.write_dict(every_kind(), str(path), [], [])
    data = path.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    (tmp_path / "flipped.hdict").write_bytes(bytes(flipped))
    (tmp_path / "truncated.hdict").write_bytes(data[: len(data) // 2])
    (tmp_path / "header_only.hdict").write_bytes(data[:16])
    for name in ("flipped", "truncated", "header_only"):
        with pytest.raises(ha.HOperatorError) as e:
            ha.read_dict(str(tmp_path / f"{name}.hdict"), [], [])
        assert code_of(e) == 5238, name
        assert e.value.operator_name == "read_dict"


@needs_container
def test_write_dict_into_missing_directory_raises_3142(tmp_path):
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_dict(ha.create_dict(), str(tmp_path / "no_dir" / "x.hdict"), [], [])
    assert code_of(e) == 3142 and e.value.operator_name == "write_dict"


@needs_container
def test_overwriting_keeps_a_readable_file(tmp_path):
    path = str(tmp_path / "x.hdict")
    first, second = ha.from_python_dict({"v": 1}), ha.from_python_dict({"v": 2, "w": "new"})
    ha.write_dict(first, path, [], [])
    ha.write_dict(second, path, [], [])
    assert ha.as_python_dict(ha.read_dict(path, [], [])) == {"v": [2], "w": ["new"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.hdict"]  # no temporary file left behind


def chain(levels):
    root = h = ha.create_dict()
    for _ in range(levels - 1):
        child = ha.create_dict()
        ha.set_dict_tuple(h, "c", child)
        h = child
    ha.set_dict_tuple(h, "leaf", 1)
    return root


def test_nesting_limit():
    assert dicts.MAX_DEPTH == 256
    assert ha.dict_to_json_s(chain(256), [], []).count("{") == 256
    for call in (lambda h: ha.dict_to_json(h, [], []), lambda h: ha.copy_dict(h, [], []), ha.as_python_dict):
        with pytest.raises(ha.HOperatorError) as e:
            call(chain(257))
        assert code_of(e) == 2899


@needs_container
def test_deepest_allowed_nesting_survives_the_container(tmp_path):
    # Python and the C++ container must agree on the limit, or one side writes what the other refuses.
    path = str(tmp_path / "deep.hdict")
    ha.write_dict(chain(256), path, [], [])
    assert_same_dict(ha.read_dict(path, [], []), chain(256))
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_dict(chain(257), path, [], [])
    assert code_of(e) == 2899


def test_json_without_nan_or_oversized_integers_and_model_files_are_not_dicts(tmp_path):
    """Python's json module takes NaN and integers of any length; JSON has no NaN, and a HALCON tuple no integer
    beyond 64 bits (the value escaped as an OverflowError). A model file read with read_dict gave its internals."""
    for text, words in [('{"a": NaN}', "NaN"), ('{"a": [1, Infinity]}', "Infinity"),
                        ('{"a": ' + "9" * 4300 + "}", "64 bits"), ('{"a": ' + "9" * 5000 + "}", "JSON")]:
        f = tmp_path / "x.json"
        f.write_text(text)
        with pytest.raises(ha.HOperatorError) as e:
            ha.read_dict(str(f), [], [])
        assert e.value.error_code == 5238 and words in str(e.value), str(e.value)
        with pytest.raises(ha.HOperatorError) as e:
            ha.json_to_dict(text, [], [])
        assert e.value.error_code == 1301
    edges = ha.json_to_dict_s('{"a": -9223372036854775808, "b": 9223372036854775807}', [], [])
    assert ha.get_dict_tuple(edges, ["a", "b"]) == [-2**63, 2**63 - 1]
    m = ha.read_dl_model("pretrained_dl_classifier_compact.hdl")
    ha.write_dl_model(m, str(tmp_path / "m.hdl"))
    with pytest.raises(ha.HOperatorError) as e:
        ha.read_dict(str(tmp_path / "m.hdl"), [], [])
    assert e.value.error_code == 5238 and "read_dl_model" in str(e.value)


# ---------------------------------------------------------------- audit 6: bad input


LONE = "caf\udce9"  # os.listdir's str for the Latin-1 file name b'caf\xe9' (a lone surrogate, no UTF-8 form)


def listing(directory):
    return sorted(p.name for p in directory.iterdir())


def test_strings_without_a_utf8_form_are_refused_before_anything_is_written(tmp_path):
    """Lone surrogates got into dicts (set_dict_tuple, json_to_dict's "\\ud800", a dataset reader's file
    names); writing them raised raw pybind11 / Unicode errors and left a temporary file behind."""
    h = ha.create_dict()
    for call, code in ((lambda: ha.set_dict_tuple(h, LONE, 1), 1302), (lambda: ha.set_dict_tuple(h, "k", LONE), 1303),
                       (lambda: ha.set_dict_tuple(h, "k", [1, LONE]), 1303),
                       (lambda: ha.set_dict_tuple_at(h, "k", 0, LONE), 1304),
                       (lambda: ha.from_python_dict({"k": [LONE]}), 1301)):
        with pytest.raises(ha.HOperatorError) as e:
            call()
        assert code_of(e) == code and "Unicode" in str(e.value)
    assert ha.get_dict_param(h, "keys", []) == []
    for text, words in (('{"a":"\\ud800"}', "'a'"), ('{"\\udce9":1}', "name"), ('{"a":["x","\\ud800"]}', "'a'")):
        with pytest.raises(ha.HOperatorError) as e:
            ha.json_to_dict(text, "convert_json_arrays_to", "tuple")
        assert (code_of(e), e.value.operator_name) == (1301, "json_to_dict") and words in str(e.value)
        (tmp_path / "in.json").write_text(text)
        with pytest.raises(ha.HOperatorError) as e:
            ha.read_dict(str(tmp_path / "in.json"), [], [])
        assert (code_of(e), e.value.operator_name) == (5238, "read_dict")
    assert ha.get_dict_tuple(ha.json_to_dict_s('{"a":"\\ud83d\\ude00"}', [], []), "a") == ["\U0001F600"]  # a pair

    # content stored without the checked operators, as read_dl_dataset_classification stores file names
    sample = dicts._new_handle({"image_file_name": [LONE + ".png"]})
    ds = dicts._new_handle({"samples": [sample], LONE: [1]})
    (tmp_path / "old.hdict").write_bytes(b"precious")
    before = listing(tmp_path)
    for name in ("old.hdict", "new.hdict", "new.json"):
        with pytest.raises(ha.HOperatorError) as e:
            ha.write_dict(ds, str(tmp_path / name), [], [])
        assert (code_of(e), e.value.operator_name) == (1301, "write_dict") and "Unicode" in str(e.value)
        assert listing(tmp_path) == before and (tmp_path / "old.hdict").read_bytes() == b"precious"
    with pytest.raises(ha.HOperatorError) as e:
        ha.dict_to_json(sample, [], [])
    assert code_of(e) == 1301 and "'image_file_name'" in str(e.value)
    # file names: a clear error instead of pybind11's TypeError
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_dict(ha.create_dict(), str(tmp_path / LONE) + ".hdict", [], [])
    assert (code_of(e), e.value.operator_name) == (1302, "write_dict")
    with pytest.raises(ha.HOperatorError) as e:
        ha.read_dict(str(tmp_path / LONE), [], [])
    assert (code_of(e), e.value.operator_name) == (1301, "read_dict")
    assert listing(tmp_path) == before


def test_the_json_writer_removes_its_temporary_file_on_any_failure(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    path.write_text('{"old":1}')

    def fail(fd):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(dicts.os, "fsync", fail)
    with pytest.raises(ha.HOperatorError) as e:
        ha.write_dict(ha.from_python_dict({"new": 2}), str(path), [], [])
    assert (code_of(e), e.value.operator_name) == (3142, "write_dict") and "disk on fire" in str(e.value)
    assert listing(tmp_path) == ["x.json"] and path.read_text() == '{"old":1}'


def test_generic_values_beyond_64_bits_are_refused():
    # they were stored and failed only in write_dict, with a code blaming its file_name
    with pytest.raises(ha.HOperatorError) as e:
        ha.json_to_dict('{"a":true}', "json_value_true", 2**70)
    assert (code_of(e), e.value.operator_name) == (1303, "json_to_dict") and "'json_value_true'" in str(e.value)
    with pytest.raises(ha.HOperatorError) as e:
        ha.read_dict("any", "json_value_null", -2**63 - 1)
    assert (code_of(e), e.value.operator_name) == (1303, "read_dict") and "64 bits" in str(e.value)
    h = ha.json_to_dict_s('{"a":true,"b":null}', ["json_value_true", "json_value_null"], [2**63 - 1, -2**63])
    assert ha.get_dict_tuple(h, ["a", "b"]) == [2**63 - 1, -2**63]


@needs_container
def test_read_dict_takes_the_format_from_the_content(tmp_path):
    """write_dict's 'file_type' wrote files read_dict could not read back: it chose the parser by extension."""
    h = ha.from_python_dict({"a": 1, "b": ["x", 2.5]})
    for name, file_type in (("j.hdict", "json"), ("c.json", "hdict"), ("c.dat", "hdict"), ("j.dat", "json")):
        ha.write_dict(h, str(tmp_path / name), "file_type", file_type)
        assert (tmp_path / name).read_bytes().startswith(b"{" if file_type == "json" else b"OPENDLC\0")
        assert_same_dict(ha.read_dict(str(tmp_path / name), "convert_json_arrays_to", "tuple"), h)
    (tmp_path / "junk.json").write_bytes(b"\x00\x01")  # neither: the name decides which error
    with pytest.raises(ha.HOperatorError) as e:
        ha.read_dict(str(tmp_path / "junk.json"), [], [])
    assert code_of(e) == 5238 and "JSON" in str(e.value)
    (tmp_path / "adir").mkdir()
    with pytest.raises(ha.HOperatorError) as e:  # "not found" before
        ha.read_dict(str(tmp_path / "adir"), [], [])
    assert (code_of(e), e.value.operator_name) == (5200, "read_dict") and "is a directory" in str(e.value)


def test_json_numbers_out_of_range_are_refused_naming_the_number(tmp_path):
    """1e999 was stored as inf, which dict_to_json then refused; an integer beyond 64 bits was reported as
    invalid JSON (and the module notes promised a real)."""
    for text, words in (('{"a":1e999}', "1e999"), ('{"a":[1,-1e999]}', "-1e999"),
                        ('{"a":18446744073709551616}', "18446744073709551616 does not fit 64 bits")):
        with pytest.raises(ha.HOperatorError) as e:
            ha.json_to_dict(text, [], [])
        assert (code_of(e), e.value.operator_name) == (1301, "json_to_dict") and words in str(e.value)
        assert "no valid JSON" not in str(e.value)
        (tmp_path / "n.json").write_text(text)
        with pytest.raises(ha.HOperatorError) as e:
            ha.read_dict(str(tmp_path / "n.json"), [], [])
        assert code_of(e) == 5238 and words in str(e.value)
    assert ha.get_dict_tuple(ha.json_to_dict_s('{"a":1e308,"b":1e-999}', [], []), ["a", "b"]) == [1e308, 0.0]


def test_every_reader_and_writer_takes_the_same_nesting_depth(tmp_path):
    """json_to_dict took 257 levels, which dict_to_json, write_dict and copy_dict refuse; so did read_dict of a
    container; the C++ container wrote and read one level more than the Python writers write."""
    deepest = ha.json_to_dict_s("[" * 256 + "]" * 256, [], [])
    ha.dict_to_json(deepest, [], [])
    ha.copy_dict(deepest, [], [])
    for text in ("[" * 257 + "]" * 257, '{"a":' * 257 + "1" + "}" * 257):
        with pytest.raises(ha.HOperatorError) as e:
            ha.json_to_dict(text, [], [])
        assert code_of(e) == 2899
    if HAS_CONTAINER:
        tree = {}
        for _ in range(256):  # 257 levels: the C++ writer took them and its reader read them
            tree = {"c": [tree]}
        with pytest.raises(ha.HOperatorError) as e:
            ha._core.dict_write_file(str(tmp_path / "deep.hdict"), tree)
        assert code_of(e) == 2899
        payload = b"D" + struct.pack("<Q", 0)
        for _ in range(256):  # the same 257 levels as a file, in the container's layout (see test_container.py)
            payload = b"D" + struct.pack("<Q", 1) + b"s" + struct.pack("<Q", 1) + b"c" + b"T" + \
                struct.pack("<Q", 1) + payload
        head = b"OPENDLC\0" + struct.pack("<IIQI", 1, 0, len(payload), zlib.crc32(payload))
        (tmp_path / "deep.hdict").write_bytes(head + struct.pack("<I", zlib.crc32(head)) + payload)
        with pytest.raises(ha.HOperatorError) as e:
            ha.read_dict(str(tmp_path / "deep.hdict"), [], [])
        assert (code_of(e), e.value.operator_name) == (2899, "read_dict")
        ha._core.dict_write_file(str(tmp_path / "ok.hdict"), tree["c"][0])
        ha.write_dict(ha.read_dict(str(tmp_path / "ok.hdict"), [], []), str(tmp_path / "again.hdict"), [], [])
