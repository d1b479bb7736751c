"""The AudioWorklet's resampler (static/js/resampler.js), run in Chromium on synthetic tones."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MEASURE = """
async ([inRate, freq]) => {
  const { Resampler } = await import('/static/js/resampler.js');
  const r = new Resampler(inRate, 16000);
  const seconds = 1;
  const input = new Float32Array(inRate * seconds);
  for (let i = 0; i < input.length; i++) input[i] = 0.5 * Math.sin(2 * Math.PI * freq * i / inRate);
  // Feed it in render-quantum blocks, as the worklet does.
  const out = [];
  for (let i = 0; i < input.length; i += 128) out.push(...r.process(input.subarray(i, i + 128)));
  const steady = out.slice(2000, out.length - 2000);
  const rms = Math.sqrt(steady.reduce((sum, x) => sum + x * x, 0) / steady.length);
  return { length: out.length, rms };
}
"""


@pytest.mark.parametrize("in_rate", [48000, 44100, 22050])
def test_it_keeps_speech_frequencies_and_filters_out_what_would_alias(site, browser, in_rate):
    page = browser.new_page()
    try:
        page.goto(f"{site.url}/accounts/login/")
        passband = page.evaluate(MEASURE, [in_rate, 1000])
        assert abs(passband["length"] - 16000) <= 64
        assert abs(passband["rms"] - 0.5 / 2**0.5) < 0.01  # a 1 kHz tone keeps its level
        if in_rate > 2 * 9000:
            # 9.5 kHz is above 16 kHz's Nyquist: dropping samples would fold it to 6.5 kHz at full level.
            stopband = page.evaluate(MEASURE, [in_rate, 9500])
            assert stopband["rms"] < 0.354 / 100  # at least 40 dB down
    finally:
        page.close()
