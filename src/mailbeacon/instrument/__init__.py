"""Rewrite one message for one recipient: pixel and tracked links in the HTML part, everything else untouched."""  # noqa: E501
