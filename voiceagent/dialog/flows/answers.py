"""Yes, no, goodbye and "drop it", as callers answer a read-back ("对的对的，就这么整", "yep go ahead",
"no, wait", "算了不退了")."""

from __future__ import annotations

import re

# (Chinese has no word boundaries: "对的对的", "嗯那行" start with a yes and run on)
YES = re.compile(r"^\W*(?:对(?!不)|是的|是啊|是+(?=\W|$|退|换|改)|好的|好(?!久|几|多|像|不|点)|可以(?!吗|不)|行(?!不)|嗯|没错|确认|确定|要得|对头)|"
                 r"^\W*(?:ok(?:ay)?|yes|yeah|yep|yup|sure|correct|right|fine|great|perfect|absolutely|exactly)\b|"
                 r"确认|确定|没错|没问题|就这样|就这么|办吧|弄吧|整吧|(退|换|改|取消)吧|go ahead|please do|do it|that's right|that is right|"
                 r"sounds good|yes please|confirm", re.I)

NO = re.compile(r"不对|不是|(?<!没)错了|不要|不用|不行|先别|\bno\b|\bnope\b|wrong|not right|don't|cancel that", re.I)

GOODBYE = re.compile(r"再见|拜拜|\bbye\b|goodbye", re.I)

DROP = re.compile(r"不退了|不换了|不改了|不办了|不要退|先不(退|换|办|改)|算了|don't want to (return|exchange)|"
                  r"no longer want|cancel the (return|exchange)|forget (it|about it)|never ?mind|leave it", re.I)


def confirms(text: str) -> bool:
    return bool(YES.search(text)) and not NO.search(text) and not GOODBYE.search(text)
