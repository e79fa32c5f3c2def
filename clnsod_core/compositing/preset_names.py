"""The built-in sky presets' names and descriptions, in the order users see them. Kept apart from
their renderers (``skies.py``, which needs torch) so listing skies for a dialog starts fast."""

from __future__ import annotations

PRESET_DESCRIPTIONS: dict[str, str] = {
    "clear-blue": "deep blue zenith fading to a pale horizon, a few wisps",
    "blue-cumulus": "blue sky with sunlit fair-weather cumulus, shaded bases",
    "cirrus": "blue sky with high, streaky ice clouds",
    "golden-hour": "warm low sun, gold-lit scattered clouds",
    "sunset": "orange-to-violet gradient, sun disc and glow, backlit clouds",
    "misty-dawn": "soft peach-and-lavender dawn with thin mist bands",
    "dramatic-clouds": "dark, heavy, high-contrast clouds",
    "stormy": "near-black storm deck with ragged low scud, light at the horizon",
    "overcast": "even grey cloud cover",
    "blue-hour": "deep blue twilight after sunset, first stars, dark cloud streaks",
    "night-stars": "dark navy night with stars and a faint milky band",
}
