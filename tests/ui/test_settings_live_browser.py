"""#19 items 5, 6, 7 and 15 in Chromium: a setting applied shows after a page reload without a restart; pinned
quicksettings appear after "Reload UI" and apply from the top bar; the sidebar and search of the Settings tab; one
🔄 refreshes every checkpoint list (and ControlNet's); Train asks before overwriting a LoRA."""

from __future__ import annotations

import shutil
import time

from tests.training.conftest import make_dataset
from tests.ui.browser import browser, choose, page, set_slider, viewport, wait_text  # noqa: F401


def listed(page, elem_id: str, text: str) -> bool:
    """Whether a dropdown's list shows `text` (opened, read, closed again)."""
    page.click(f"#{elem_id} input")
    items = page.locator(f"#{elem_id} ul[role=listbox] li")
    items.first.wait_for()
    found = any(text in t for t in items.all_inner_texts())
    page.keyboard.press("Escape")
    page.evaluate("() => document.activeElement?.blur()")  # a multiselect keeps its list open until it loses focus
    return found


def test_settings_apply_live_and_quicksettings_reload_ui(live_server, page):
    srv = live_server()
    page.goto(srv.url)
    page.click("#tab_settings-button")
    set_slider(page, "setting_txt2img_default_steps", 33)
    page.click("#settings_submit")
    wait_text(page, "#settings_result", "txt2img_default_steps")
    srv.app.set_options({"txt2img_default_sampler": "DPM++ 2M"})  # the API's way: shown on the next load too
    page.reload()
    wait_text(page, "#txt2img_steps input[type=number]", "33")
    wait_text(page, "#txt2img_sampling input", "DPM++ 2M")
    page.click("#tab_img2img-button")
    wait_text(page, "#img2img_steps input[type=number]", "33")

    # the sidebar shows one section; the search finds settings by label or name over all sections
    page.click("#tab_settings-button")
    page.locator("#settings_sections label", has_text="Limits").click()
    page.wait_for_function(
        "() => getComputedStyle(document.querySelector('#settings_section_paths')).display === 'none'"
    )
    assert page.locator("#settings_section_limits").first.is_visible()  # Gradio gives a Group its id twice
    page.locator("#settings_sections label", has_text="All").click()
    page.locator("#settings_search textarea").press_sequentially("jpeg")
    page.wait_for_function("() => !document.querySelector('#setting_samples_save').checkVisibility()")
    assert page.locator("#setting_jpeg_quality").is_visible()
    assert "(requires Reload UI)" in page.inner_text("#setting_quicksettings_list")

    # pinning VAE and Clip skip needs the page rebuilt: "Reload UI" does it, no restart
    assert page.locator("#quicksettings #setting_CLIP_stop_at_last_layers").count() == 0
    srv.app.set_options({"quicksettings_list": ["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"]})
    page.locator("#settings_search textarea").fill("")
    page.click("#settings_restart_gradio")
    page.wait_for_selector("#quicksettings #setting_CLIP_stop_at_last_layers", timeout=60_000)
    assert page.locator("#setting_sd_vae").count() == 1  # in the top bar only, not repeated in Settings
    assert page.locator("#quicksettings #setting_sd_vae").count() == 1
    set_slider(page, "setting_CLIP_stop_at_last_layers", 2)
    wait_text(page, "#quicksettings_message", "Clip skip")
    assert srv.app.options.get("CLIP_stop_at_last_layers") == 2
    wait_text(page, "#txt2img_steps input[type=number]", "33")  # the rebuilt page still reads the settings


def test_one_refresh_updates_every_checkpoint_list(data_dir, live_server, page):
    srv = live_server()
    srv.app.model_watch.min_interval = float("inf")  # the folder watch holds still: here 🔄 alone refreshes
    page.goto(srv.url)
    page.wait_for_selector("#setting_sd_model_checkpoint input")
    models = data_dir / "models"
    shutil.copyfile(
        models / "Stable-diffusion" / "tiny-a.safetensors", models / "Stable-diffusion" / "fresh-model.safetensors"
    )
    (models / "ControlNet").mkdir(exist_ok=True)
    (models / "ControlNet" / "fresh-cn.safetensors").write_bytes(b"x" * 64)
    assert not listed(page, "setting_sd_model_checkpoint", "fresh-model")
    page.click("#refresh_sd_model_checkpoint")
    page.wait_for_function("() => !document.querySelector('#refresh_sd_model_checkpoint').disabled")
    page.wait_for_timeout(500)
    assert listed(page, "setting_sd_model_checkpoint", "fresh-model")
    page.locator("#txt2img_hr").get_by_text("Hires. fix").first.click()
    assert listed(page, "hr_checkpoint", "fresh-model")
    page.locator("#txt2img_script_controlnet").get_by_text("ControlNet", exact=True).first.click()
    assert listed(page, "txt2img_controlnet_unit_0_model", "fresh-cn")
    page.click("#tab_train-button")
    assert listed(page, "train_checkpoint", "fresh-model")
    page.click("#tab_modelmerger-button")
    assert listed(page, "modelmerger_primary_model_name", "fresh-model")

    # X/Y/Z: a checkpoint axis picks from the live list (A1111's values dropdown), free text for numbers
    page.click("#tab_txt2img-button")
    choose(page, "txt2img_script", "X/Y/Z plot")
    # waited for, not read at once: the script's controls appear after the choice's round trip (a loaded CI
    # machine read them before they were shown)
    page.wait_for_selector("#script_txt2img_xyz_plot_x_values", state="visible", timeout=15_000)  # Seed: free text
    choose(page, "script_txt2img_xyz_plot_x_type", "Checkpoint name")
    page.wait_for_selector("#script_txt2img_xyz_plot_x_values_dropdown", state="visible")
    page.wait_for_selector("#script_txt2img_xyz_plot_x_values", state="hidden", timeout=15_000)
    assert listed(page, "script_txt2img_xyz_plot_x_values_dropdown", "fresh-model")

    # "or a new file appears": no 🔄, the page's poll of the folder watch updates every list
    srv.app.model_watch.min_interval = 0
    shutil.copyfile(
        models / "Stable-diffusion" / "tiny-a.safetensors", models / "Stable-diffusion" / "dropped-in.safetensors"
    )
    (models / "ControlNet" / "dropped-cn.safetensors").write_bytes(b"y" * 64)
    token = "() => document.querySelector('#easel_models_token textarea').value"
    page.wait_for_function(f"(seen) => ({token})() !== seen", arg=page.evaluate(token), timeout=20_000)
    deadline = time.monotonic() + 10
    while not listed(page, "setting_sd_model_checkpoint", "dropped-in"):
        assert time.monotonic() < deadline, "the top bar never listed a checkpoint dropped into the folder"
        page.wait_for_timeout(500)
    assert listed(page, "script_txt2img_xyz_plot_x_values_dropdown", "dropped-in")
    assert listed(page, "hr_checkpoint", "dropped-in")
    assert listed(page, "txt2img_controlnet_unit_0_model", "dropped-cn")


def test_train_asks_before_overwriting(live_server, page):
    import torch
    from safetensors.torch import save_file

    srv = live_server()
    lora = srv.app.paths.lora_dir / "mine.safetensors"
    save_file(
        {"x": torch.zeros(1)},
        str(lora),
        metadata={"easel_trainer": "test", "ss_output_name": "mine", "ss_steps": "500"},
    )
    before = lora.read_bytes()
    page.goto(srv.url)
    page.click("#tab_train-button")
    page.fill("#train_name textarea, #train_name input", "mine")
    wait_text(page, "#train_name_note", "mine.safetensors already exists (500 steps")
    assert "Overwrite existing LoRA" in page.inner_text("#train_name_note")
    dataset = make_dataset(srv.app.paths.data_dir / "training" / "datasets" / "sq", n=2)
    page.fill("#train_dataset_dir textarea, #train_dataset_dir input", str(dataset))
    page.click("#train_start")
    wait_text(page, "#train_progress", "Overwrite existing LoRA")
    assert page.locator("#train_progress .easel-error").is_visible()
    assert lora.read_bytes() == before and srv.app.jobs.current is None
    page.fill("#train_name textarea, #train_name input", "someone-new")
    page.wait_for_function("() => !document.querySelector('#train_name_note').innerText.includes('exists')")
