"""Per submodule of our StyleGAN2 G/D: the official constructor call (`_init_args`, `_init_kwargs`) and the plain
attributes it sets, as the official `training/networks.py` (layout "ada") or the stylegan3 repo's
`training/networks_stylegan2.py` (layout "sg3") would have them, keyed by dotted module path ("" = root).

Every persistent object records its own constructor arguments, so an official pickle's submodule records carry
them too (e.g. `SynthesisLayer(64, 64, w_dim=64, resolution=8, up=2, resample_filter=[1,3,3,1], ...)`). The
stylegan3 repo's layers also keep their channel counts as attributes. Gains computed with `np.sqrt` are numpy
float64 scalars. Derived from the config's kwargs and our module tree (same names and nesting as the official).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from torch import nn

SQRT2 = np.sqrt(2)
_SYN_DEFAULTS = {"ada": {"num_fp16_res": 0, "conv_clamp": None}, "sg3": {"num_fp16_res": 4, "conv_clamp": 256}}
_D_DEFAULTS = _SYN_DEFAULTS
_MAP_BETA = {"ada": 0.995, "sg3": 0.998}
_NAMED = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs")


class Call(NamedTuple):
    args: tuple
    kwargs: dict
    attrs: dict


def _fc(in_f: int, out_f: int, layout: str, *, activation: str = "linear", lr: float = 1, kwargs: dict) -> Call:
    attrs = dict(in_features=in_f, out_features=out_f) if layout == "sg3" else {}
    attrs.update(activation=activation, weight_gain=lr / np.sqrt(in_f), bias_gain=lr)
    return Call((in_f, out_f), kwargs, attrs)


def _conv(in_c: int, out_c: int, k: int, layout: str, *, activation: str = "linear", down: int = 1,
          conv_clamp: Any = None, bias: bool = True, kwargs: dict) -> Call:
    attrs = dict(in_channels=in_c, out_channels=out_c) if layout == "sg3" else {}
    attrs.update(activation=activation, up=1, down=down, conv_clamp=conv_clamp, padding=k // 2,
                 weight_gain=1 / np.sqrt(in_c * k ** 2), act_gain=SQRT2 if activation == "lrelu" else 1)
    if not bias:
        attrs["bias"] = None
    return Call((in_c, out_c), kwargs, attrs)


def generator_calls(G: nn.Module, init: dict, layout: str) -> dict[str, Call]:
    """Constructor calls of the official Generator built with root `_init_kwargs` `init`, for every submodule."""
    calls: dict[str, Call] = {}
    synth = dict(init["synthesis_kwargs"]) if layout == "ada" else {k: v for k, v in init.items() if k not in _NAMED}
    eff = {**_SYN_DEFAULTS[layout], **synth}
    w, res_log2 = init["w_dim"], int(np.log2(init["img_resolution"]))
    calls[""] = Call((), init, dict(z_dim=init["z_dim"], c_dim=init["c_dim"], w_dim=w,
                                    img_resolution=init["img_resolution"], img_channels=init["img_channels"],
                                    num_ws=G.num_ws))
    s_attrs = dict(w_dim=w, img_resolution=init["img_resolution"], img_resolution_log2=res_log2,
                   img_channels=init["img_channels"])
    if layout == "sg3":
        s_attrs["num_fp16_res"] = eff["num_fp16_res"]
    resolutions = [2 ** i for i in range(2, res_log2 + 1)]
    s_attrs.update(block_resolutions=resolutions, num_ws=G.num_ws)
    calls["synthesis"] = Call((), dict(w_dim=w, img_resolution=init["img_resolution"],
                                       img_channels=init["img_channels"], **synth), s_attrs)
    block_kwargs = {k: v for k, v in synth.items() if k not in ("channel_base", "channel_max", "num_fp16_res")}
    clamp = block_kwargs.get("conv_clamp", _SYN_DEFAULTS[layout]["conv_clamp"])
    rf = list(block_kwargs.get("resample_filter", [1, 3, 3, 1]))
    fp16_res = max(2 ** (res_log2 + 1 - eff["num_fp16_res"]), 8)
    for res in resolutions:
        block = getattr(G.synthesis, f"b{res}")
        out_c = block.conv1.weight.shape[0]
        in_c = 0 if res == 4 else block.conv0.weight.shape[1]
        p = f"synthesis.b{res}"
        use_fp16 = res >= fp16_res
        b_attrs = dict(in_channels=in_c, w_dim=w, resolution=res, img_channels=init["img_channels"],
                       is_last=res == init["img_resolution"], architecture="skip", use_fp16=use_fp16,
                       channels_last=False)
        if layout == "sg3":
            b_attrs["fused_modconv_default"] = block_kwargs.get("fused_modconv_default", True)
        b_attrs.update(num_conv=1 if res == 4 else 2, num_torgb=1)
        calls[p] = Call((in_c, out_c), dict(w_dim=w, resolution=res, img_channels=init["img_channels"],
                                            is_last=res == init["img_resolution"], use_fp16=use_fp16,
                                            **block_kwargs), b_attrs)
        layers = [("conv1", out_c, out_c, {})] if res == 4 else [
            ("conv0", in_c, out_c, dict(up=2, resample_filter=rf)), ("conv1", out_c, out_c, {})]
        for name, ci, co, extra in layers:
            l_attrs = dict(in_channels=ci, out_channels=co, w_dim=w) if layout == "sg3" else {}
            l_attrs.update(resolution=res, up=extra.get("up", 1), use_noise=True, activation="lrelu",
                           conv_clamp=clamp, padding=1, act_gain=SQRT2)
            calls[f"{p}.{name}"] = Call((ci, co), dict(w_dim=w, resolution=res, **extra, conv_clamp=clamp,
                                                       channels_last=False), l_attrs)
            calls[f"{p}.{name}.affine"] = _fc(w, ci, layout, kwargs=dict(bias_init=1))
        t_attrs = dict(in_channels=out_c, out_channels=init["img_channels"], w_dim=w) if layout == "sg3" else {}
        t_attrs.update(conv_clamp=clamp, weight_gain=1 / np.sqrt(out_c))
        calls[f"{p}.torgb"] = Call((out_c, init["img_channels"]), dict(w_dim=w, conv_clamp=clamp,
                                                                       channels_last=False), t_attrs)
        calls[f"{p}.torgb.affine"] = _fc(w, out_c, layout, kwargs=dict(bias_init=1))
    mapping = dict(init.get("mapping_kwargs") or {})
    calls["mapping"] = Call((), dict(z_dim=init["z_dim"], c_dim=init["c_dim"], w_dim=w, num_ws=G.num_ws,
                                     **mapping),
                            dict(z_dim=init["z_dim"], c_dim=init["c_dim"], w_dim=w, num_ws=G.num_ws,
                                 num_layers=mapping.get("num_layers", 8),
                                 w_avg_beta=mapping.get("w_avg_beta", _MAP_BETA[layout])))
    act, lr = mapping.get("activation", "lrelu"), mapping.get("lr_multiplier", 0.01)
    for i in range(mapping.get("num_layers", 8)):
        fc = getattr(G.mapping, f"fc{i}")
        calls[f"mapping.fc{i}"] = _fc(fc.weight.shape[1], fc.weight.shape[0], layout, activation=act, lr=lr,
                                      kwargs=dict(activation=act, lr_multiplier=lr))
    return calls


def discriminator_calls(D: nn.Module, init: dict, layout: str) -> dict[str, Call]:
    """Constructor calls of the official (unconditional) Discriminator built with root `_init_kwargs` `init`."""
    eff = {**_D_DEFAULTS[layout], **init}
    res_log2 = int(np.log2(init["img_resolution"]))
    resolutions = [2 ** i for i in range(res_log2, 2, -1)]
    calls = {"": Call((), init, dict(c_dim=init["c_dim"], img_resolution=init["img_resolution"],
                                     img_resolution_log2=res_log2, img_channels=init["img_channels"],
                                     block_resolutions=resolutions))}
    common = dict(img_channels=init["img_channels"], architecture=eff.get("architecture", "resnet"),
                  conv_clamp=eff["conv_clamp"])
    block_kwargs = dict(init.get("block_kwargs") or {})
    act = block_kwargs.get("activation", "lrelu")
    rf = list(block_kwargs.get("resample_filter", [1, 3, 3, 1]))
    fp16_res = max(2 ** (res_log2 + 1 - eff["num_fp16_res"]), 8)
    layer_idx = 0
    for res in resolutions:
        block = getattr(D, f"b{res}")
        tmp, out = block.conv0.weight.shape[0], block.conv1.weight.shape[0]
        in_c = 0 if res == init["img_resolution"] else tmp
        use_fp16 = res >= fp16_res
        num_layers = 4 if in_c == 0 else 3
        p = f"b{res}"
        calls[p] = Call((in_c, tmp, out), dict(resolution=res, first_layer_idx=layer_idx, use_fp16=use_fp16,
                                               **block_kwargs, **common),
                        dict(in_channels=in_c, resolution=res, img_channels=init["img_channels"],
                             first_layer_idx=layer_idx, architecture=common["architecture"], use_fp16=use_fp16,
                             channels_last=False, num_layers=num_layers))
        clamp = common["conv_clamp"]
        if in_c == 0:
            calls[f"{p}.fromrgb"] = _conv(init["img_channels"], tmp, 1, layout, activation=act, conv_clamp=clamp,
                                          kwargs=dict(kernel_size=1, activation=act, trainable=True,
                                                      conv_clamp=clamp, channels_last=False))
        calls[f"{p}.conv0"] = _conv(tmp, tmp, 3, layout, activation=act, conv_clamp=clamp,
                                    kwargs=dict(kernel_size=3, activation=act, trainable=True, conv_clamp=clamp,
                                                channels_last=False))
        calls[f"{p}.conv1"] = _conv(tmp, out, 3, layout, activation=act, down=2, conv_clamp=clamp,
                                    kwargs=dict(kernel_size=3, activation=act, down=2, trainable=True,
                                                resample_filter=rf, conv_clamp=clamp, channels_last=False))
        calls[f"{p}.skip"] = _conv(tmp, out, 1, layout, down=2, bias=False,
                                   kwargs=dict(kernel_size=1, bias=False, down=2, trainable=True,
                                               resample_filter=rf, channels_last=False))
        layer_idx += num_layers
    epilogue = dict(init.get("epilogue_kwargs") or {})
    ch = D.b4.conv.weight.shape[0]
    calls["b4"] = Call((ch,), dict(cmap_dim=0, resolution=4, **epilogue, **common),
                       dict(in_channels=ch, cmap_dim=0, resolution=4, img_channels=init["img_channels"],
                            architecture=common["architecture"]))
    mb_n = epilogue.get("mbstd_num_channels", 1)
    mb_g = epilogue.get("mbstd_group_size", 4)
    e_act = epilogue.get("activation", "lrelu")
    calls["b4.mbstd"] = Call((), dict(group_size=mb_g, num_channels=mb_n), dict(group_size=mb_g, num_channels=mb_n))
    calls["b4.conv"] = _conv(ch + mb_n, ch, 3, layout, activation=e_act, conv_clamp=common["conv_clamp"],
                             kwargs=dict(kernel_size=3, activation=e_act, conv_clamp=common["conv_clamp"]))
    calls["b4.fc"] = _fc(ch * 16, ch, layout, activation=e_act, kwargs=dict(activation=e_act))
    calls["b4.out"] = _fc(ch, 1, layout, kwargs={})
    return calls
