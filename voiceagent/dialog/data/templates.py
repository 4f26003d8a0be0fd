"""Utterance templates for the NLU data, per intent and language.

Each template may hold slot markers ({order_id}, {product}, ...). `make_nlu_data.py` fills them,
adds ASR-like noise and colloquial fillers, and splits by *template* into train and dev, so the
dev set measures sentences the classifier has not seen the shape of.
"""

T = {
"product.info": {
 "zh": ["这件{product}是什么材质的", "{product}的面料会起球吗", "这个{product}洗了会缩水吗", "{product}颜色和图片一样吗",
        "这款{product}适合多大年纪穿", "{product}质量怎么样", "{product}会不会掉色啊", "请问{product}的规格参数",
        "{product}透气吗夏天能穿吗", "{product}厚不厚", "这个{product}有没有异味", "{product}是纯棉的吗",
        "那个{product}的做工怎么样", "{product}能机洗吗", "这个颜色是偏深还是偏浅"],
 "en": ["what material is the {product} made of", "will the {product} pill after washing", "does the {product} shrink",
        "is the {product} the same color as the photo", "who is the {product} suitable for", "how is the quality of the {product}",
        "will the {product} fade", "what are the specs of the {product}", "is the {product} breathable enough for summer",
        "how thick is the {product}", "is the {product} machine washable", "is the {product} pure cotton",
        "tell me more about the {product}", "what's the {product} like", "is the color darker than in the picture"]},
"product.size": {
 "zh": ["我该穿什么码", "{product}偏大还是偏小", "我身高一米六五体重五十公斤穿什么码", "这个{product}显瘦吗", "平时穿{size}这款选什么码",
        "{product}偏码吗", "腰围二尺穿几码", "尺码表在哪看", "这件显胖吗", "我一米七八穿{size}合适吗", "{product}要不要拍大一码",
        "一百二十斤穿多大的", "脚长二十四厘米穿几码", "{product}码数标准吗", "我平时穿{size}码的鞋"],
 "en": ["what size should I get", "does the {product} run small or large", "I'm five foot five, which size fits me",
        "does the {product} look slimming", "I usually wear {size}, what size for this one", "is the {product} true to size",
        "I'm usually a size nine in shoes", "where is the size chart", "will {size} fit me if I'm 170 cm",
        "should I size up in the {product}", "what size for 60 kilos", "my feet are 24 centimeters, which size",
        "is the sizing standard on the {product}", "would you recommend {size} or the next size up", "how does the {product} fit"]},
"product.price": {
 "zh": ["{product}多少钱", "{product}现在什么价格", "用了优惠券以后{product}多少钱", "怎么昨天还便宜今天涨价了", "{product}能不能便宜一点",
        "{product}到手价是多少", "会员买{product}多少钱", "这个{product}卖多少", "{product}价格会降吗", "这款的价格是多少"],
 "en": ["how much is the {product}", "what's the price of the {product} now", "what does the {product} cost after the discount",
        "why did the price go up", "can you give me a better price on the {product}", "how much will I actually pay for the {product}",
        "is there a member price for the {product}", "what's the {product} going for", "will the price of the {product} drop",
        "price of this one please"]},
"product.stock": {
 "zh": ["{product}还有货吗", "{product}什么时候补货", "{color}的还有没有", "{size}码有现货吗", "{product}缺货的话多久能到",
        "{product}库存还有多少", "{product}卖完了吗", "{color}{product}还能买到吗", "什么时候到货", "{product}{size}码有吗"],
 "en": ["is the {product} in stock", "when will the {product} be restocked", "do you still have it in {color}",
        "is {size} available", "the {product} says sold out, when will you have more", "how many {product} are left",
        "is the {color} {product} available", "can I still buy the {product}", "when is it back in stock", "do you have the {product} in {size}"]},
"product.recommend": {
 "zh": ["帮我推荐一款{product}", "这两个哪个好", "送妈妈买哪个合适", "我在纠结买哪个", "有没有类似的推荐", "哪款{product}最适合跑步",
        "不知道选哪个颜色", "预算三百左右买什么好", "有什么适合送男朋友的", "你觉得哪个更值"],
 "en": ["can you recommend a {product}", "which of these two is better", "what should I buy as a gift for my mom",
        "I can't decide between them", "anything similar you'd recommend", "which {product} is best for running",
        "I'm not sure which color to pick", "what can I get for around 300", "what's a good gift for my boyfriend", "which one is better value"]},
"order.status": {
 "zh": ["我的订单什么时候发货", "订单{order_id}发货了吗", "怎么还不发货", "能不能快点发货", "帮我查一下订单状态", "我下的单到哪一步了",
        "订单号{order_id}发了没有", "我想查一下我的订单", "我前天买的东西发了吗", "手机号{phone}下的单发货没", "{order_id}这个单什么时候发",
        "付款好几天了还没发货", "催一下发货", "我的单子处理了吗", "订单一直显示待发货"],
 "en": ["when will my order ship", "has order {order_id} shipped yet", "why hasn't my order shipped", "can you expedite my order",
        "check the status of my order", "what's happening with my order", "I want to know about my order {order_id}",
        "order {order_id}, has it been sent", "did my order from the day before yesterday ship", "the order under {phone}, has it shipped",
        "when does order {order_id} go out", "I paid days ago and it still hasn't shipped", "please hurry my order",
        "is my order being processed", "my order still says awaiting shipment"]},
"order.modify": {
 "zh": ["我想改一下收货地址", "能帮我换个颜色吗还没发货", "下错尺码了能改吗", "我想把数量改成{quantity}", "地址写错了",
        "修改订单信息", "订单{order_id}的地址改成{address}", "帮我把{size}改成大一码", "收件人电话要改一下", "订单能改成{color}的吗"],
 "en": ["I need to change my shipping address", "can I change the color before it ships", "I ordered the wrong size, can I change it",
        "I want to change the quantity to {quantity}", "I put the wrong address", "can I modify my order",
        "please update the address on order {order_id}", "switch my order to {size}", "I need to change the phone number on my order",
        "can order {order_id} be changed to {color}"]},
"order.cancel": {
 "zh": ["我要取消订单", "不想要了帮我取消", "这个订单取消掉", "拍错了能取消吗", "怎么取消订单", "订单{order_id}帮我取消",
        "我不要了，退单", "取消{order_id}这个单", "能撤销订单吗", "我重复下单了取消一个"],
 "en": ["I want to cancel my order", "please cancel it, I don't want it anymore", "cancel this order", "I ordered by mistake, can I cancel",
        "how do I cancel an order", "cancel order {order_id} please", "I don't want it, call the order off", "please void order {order_id}",
        "can I withdraw my order", "I placed the order twice, cancel one"]},
"logistics.track": {
 "zh": ["我的快递到哪了", "物流信息怎么一直不更新", "包裹什么时候能到", "显示已签收但是我没收到", "快递单号是多少", "帮我查一下物流",
        "快递三天了还没到", "运单号{tracking_no}到哪了", "{order_id}的快递到哪里了", "包裹是不是丢了", "快递员什么时候送",
        "东西还在路上吗", "物流停在一个地方不动了", "今天能送到吗", "查下快递"],
 "en": ["where is my parcel", "the tracking hasn't updated for days", "when will my package arrive", "it says delivered but I never got it",
        "what's the tracking number", "can you track my package", "my delivery is late", "where is tracking number {tracking_no}",
        "where is the parcel for order {order_id}", "is my package lost", "when will the courier come",
        "is my stuff still on the way", "the tracking is stuck in one place", "will it arrive today", "track my delivery please"]},
"aftersales.return": {
 "zh": ["我要退货", "怎么申请退货", "退货运费谁出", "衣服不合适想退", "七天无理由退货怎么操作", "退货流程是什么", "买的东西不喜欢可以退吗",
        "订单{order_id}我要退", "{product}{reason}想退掉", "退货地址是哪里", "能退吗已经穿过一次", "不想要了能寄回去吗",
        "我要把{product}退了", "退货要多久", "申请退货"],
 "en": ["I want to return this", "how do I return an item", "who pays for return shipping", "it doesn't fit, I'd like to send it back",
        "what is your return policy", "how does the return process work", "can I return it if I don't like it",
        "I want to return order {order_id}", "the {product} is {reason}, I want to return it", "where do I send returns",
        "can I return something I wore once", "I don't want it, can I ship it back", "I'd like to return the {product}",
        "how long does a return take", "start a return for me"]},
"aftersales.exchange": {
 "zh": ["我想换个尺码", "能换成别的颜色吗", "收到了但是码数不对想换", "换货怎么弄", "大了想换小一码", "{product}想换成{color}的",
        "订单{order_id}换{size}码", "换货运费谁出", "能换一件新的吗", "颜色不喜欢想换"],
 "en": ["I want to exchange it for a different size", "can I swap it for another color", "I got the wrong size and want to exchange",
        "how do exchanges work", "it's too big, I need one size smaller", "I'd like to exchange the {product} for {color}",
        "exchange order {order_id} for {size}", "who pays shipping on an exchange", "can I get a replacement", "I don't like the color, can I change it"]},
"aftersales.refund": {
 "zh": ["退款什么时候到账", "我的退款怎么还没到", "退款被拒绝了", "钱什么时候退给我", "退款进度查一下", "订单{order_id}的退款呢",
        "退了{amount}元怎么还没收到", "为什么不给我退款", "退款退到哪里了", "退货寄回去了钱呢"],
 "en": ["when will I get my refund", "my refund still hasn't arrived", "why was my refund rejected", "when do I get my money back",
        "check my refund status", "what about the refund for order {order_id}", "I was promised {amount} yuan back and got nothing",
        "why won't you refund me", "where did my refund go", "I sent it back, where's my money"]},
"aftersales.complaint": {
 "zh": ["收到的东西是坏的", "发错货了", "赠品没有收到", "你们客服态度太差了", "我要投诉", "东西质量太差了我要曝光你们",
        "快递员态度恶劣", "你们怎么回事，东西都是破的", "{product}到手就坏了", "说好的赠品呢", "少发了一件", "包装都压扁了",
        "太失望了，再也不买了", "这是假货吧", "给我个说法"],
 "en": ["the item arrived broken", "you sent me the wrong item", "the free gift was missing", "your service is terrible",
        "I want to make a complaint", "this is unacceptable, I'll report you", "the courier was rude", "this is ridiculous, everything is damaged",
        "the {product} was broken when it arrived", "where is the gift you promised", "one item is missing from my order",
        "the box was crushed", "I'm so disappointed, never buying again", "this looks fake", "I want an explanation"]},
"aftersales.warranty": {
 "zh": ["保修多久", "坏了能保修吗", "怎么申请维修", "过了保修期怎么办", "{product}坏了可以修吗", "保修需要什么凭证", "在哪里修",
        "保修包括什么", "用了半年坏了保修吗", "修好要多久"],
 "en": ["how long is the warranty", "is this covered by warranty", "how do I get it repaired", "what if the warranty has expired",
        "my {product} stopped working, can you fix it", "what do I need for a warranty claim", "where can I get it repaired",
        "what does the warranty cover", "it broke after six months, is that covered", "how long do repairs take"]},
"aftersales.invoice": {
 "zh": ["能开发票吗", "怎么开发票", "我要增值税专用发票", "发票什么时候发给我", "需要收据", "订单{order_id}开个发票", "发票抬头写错了",
        "电子发票在哪里下载", "可以开公司抬头吗", "补开发票"],
 "en": ["can I get an invoice", "how do I request an invoice", "I need a VAT invoice", "when will I receive the invoice",
        "I need a receipt", "invoice for order {order_id} please", "the invoice has the wrong company name", "where do I download the e-invoice",
        "can the invoice be in my company's name", "I need a copy of my invoice"]},
"promo.coupon": {
 "zh": ["有没有优惠券", "现在有什么活动", "满减怎么算", "优惠券怎么用不了", "新人有优惠吗", "双十一有折扣吗", "能给我发张券吗",
        "会员有折扣吗", "优惠券过期了还能用吗", "有包邮活动吗"],
 "en": ["do you have any coupons", "are there any promotions right now", "how does the discount work", "my coupon doesn't work",
        "is there a discount for new customers", "any sales this week", "can you send me a coupon", "do members get a discount",
        "can I still use an expired coupon", "is there free shipping"]},
"account.info": {
 "zh": ["我是什么会员", "我的积分有多少", "积分怎么用", "怎么升级VIP", "会员有什么权益", "账号登不上了", "积分什么时候过期",
        "怎么修改绑定手机", "会员等级怎么算", "我是VIP吗"],
 "en": ["what membership level am I", "how many points do I have", "how do I use my points", "how do I become a VIP",
        "what are the member benefits", "I can't log into my account", "when do my points expire", "how do I change my phone number on the account",
        "how are membership levels calculated", "am I a VIP"]},
"handoff.human": {
 "zh": ["转人工", "我要找人工客服", "帮我转接人工", "能不能让真人跟我说", "叫你们主管来", "我不想跟机器人说话", "人工服务",
        "给我转个人工", "有没有真人客服", "我要跟你们经理说"],
 "en": ["can I speak to a real person", "transfer me to a human agent", "I want to talk to a person", "get me your supervisor",
        "I don't want to talk to a robot", "let me speak to a manager", "human please", "put me through to someone",
        "is there a real person I can talk to", "connect me to customer service staff"]},
"chitchat.greeting": {
 "zh": ["你好", "在吗", "有人吗", "喂你好", "您好，请问是客服吗", "早上好", "哈喽", "喂喂，听得到吗"],
 "en": ["hello", "hi there", "are you there", "hello, is this customer service", "good morning", "hey", "hi, can you hear me", "good afternoon"]},
"chitchat.goodbye": {
 "zh": ["谢谢，没有别的问题了", "好的再见", "就这些，谢谢", "你们服务真好", "拜拜", "好的，明白了，谢谢你", "辛苦了", "没事了挂了"],
 "en": ["thanks, that's all", "bye", "that's everything, thank you", "great service, thanks", "goodbye", "okay, got it, thank you",
        "you've been very helpful", "nothing else, bye"]},
"other": {
 "zh": ["今天天气怎么样", "给我讲个笑话", "你会写代码吗", "股票怎么买", "附近有什么好吃的", "帮我订一张机票", "你是男的还是女的",
        "现在几点了", "帮我算一下一加一", "你喜欢什么电影"],
 "en": ["what's the weather today", "tell me a joke", "can you write code", "what stocks should I buy", "any good restaurants nearby",
        "book me a flight", "are you a man or a woman", "what time is it", "what's one plus one", "what movies do you like"]},
}

# More phrasings per intent: colloquial, indirect, and the words callers really use.
MORE = {
"product.info": {
 "zh": ["{product}用的什么料子", "{product}软不软", "{product}有几个颜色", "{product}保暖吗", "这个{product}重不重", "{product}怎么清洗",
        "{product}防水吗", "{product}是哪里产的"],
 "en": ["what fabric is the {product}", "is the {product} soft", "what colors does the {product} come in", "is the {product} warm",
        "how heavy is the {product}", "how do I clean the {product}", "is the {product} waterproof", "where is the {product} made"]},
"product.size": {
 "zh": ["我胸围九十穿几号", "{product}尺码怎么选", "一百斤左右穿{size}可以吗", "这双鞋要买大一码吗", "码子准不准", "我平常穿{size}，这个要不要换码",
        "给我推荐个尺码", "肩宽四十适合哪个码"],
 "en": ["which size fits a 36 inch chest", "how do I pick a size for the {product}", "will {size} fit someone around 50 kilos",
        "should I go a size up for these shoes", "is the sizing accurate", "I normally take {size}, should I change for this",
        "recommend me a size", "what size for broad shoulders"]},
"product.price": {
 "zh": ["{product}怎么卖", "{product}贵不贵", "{product}打完折多少", "现在买{product}划算吗", "这个价格是含运费的吗", "{product}标价多少",
        "有没有更便宜的价格", "{product}原价多少"],
 "en": ["how much does the {product} sell for", "is the {product} expensive", "what's the {product} after the sale",
        "is it a good time to buy the {product}", "does the price include shipping", "what's the list price of the {product}",
        "can I get it cheaper", "what was the original price"]},
"product.stock": {
 "zh": ["{product}断货了吗", "{color}的什么时候有货", "{product}还能下单吗", "{size}码没货了吗", "{product}预售什么时候发", "还剩几件"],
 "en": ["is the {product} out of stock", "when will {color} be available again", "can I still order the {product}",
        "is {size} sold out", "when does the pre-order for the {product} ship", "how many are left in stock"]},
"product.recommend": {
 "zh": ["你帮我挑一个", "哪个卖得最好", "有没有性价比高的{product}", "冬天穿哪款好", "给老人买哪个好", "这款和那款有什么区别",
        "最近流行什么款", "帮我选个颜色"],
 "en": ["help me pick one", "which one sells best", "is there a good value {product}", "what's best for winter",
        "what would you get for an elderly person", "what's the difference between these two", "what's popular right now",
        "help me choose a color"]},
"order.status": {
 "zh": ["下单好久了什么时候寄出", "我的东西寄出了吗", "订单现在什么状态", "{order_id}发出去没有", "今天能发货吗", "还要等几天发货",
        "帮我看看订单{order_id}", "我买的东西怎么样了"],
 "en": ["I ordered ages ago, when will it be sent", "has my stuff been sent out", "what's the status of order {order_id}",
        "has {order_id} gone out yet", "will it ship today", "how many more days until it ships", "look up order {order_id} for me",
        "what's going on with my purchase"]},
"order.modify": {
 "zh": ["订单里的数量要改", "收货人名字写错了能改吗", "发货前能改地址吗", "我想加一件到订单里", "把收货地址换成{address}", "订单颜色选错了想改",
        "改一下订单的尺码", "能改收货时间吗"],
 "en": ["I need to change the number of items", "the recipient's name is wrong, can I fix it", "can I change the address before it ships",
        "I want to add one more item to my order", "change the delivery address please", "I picked the wrong color on my order",
        "change the size on my order", "can I change the delivery time"]},
"order.cancel": {
 "zh": ["这单不要了", "刚下的单能退掉吗还没发货", "我要撤单", "帮我把订单关掉", "订单{order_id}不要了", "取消刚才那个订单"],
 "en": ["I don't want this order anymore", "I just ordered, can I call it off before it ships", "kill the order please",
        "close my order", "I no longer want order {order_id}", "cancel the order I just made"]},
"logistics.track": {
 "zh": ["快递到哪个城市了", "我的包裹怎么还没送来", "配送员电话多少", "物流显示异常", "派送中是什么意思", "快递被别人签收了",
        "{order_id}的物流信息", "包裹几点能到"],
 "en": ["which city is my parcel in now", "why hasn't my package come yet", "what's the courier's phone number",
        "the tracking shows an exception", "what does out for delivery mean", "someone else signed for my parcel",
        "tracking info for order {order_id}", "what time will the package come"]},
"aftersales.return": {
 "zh": ["东西不想要了怎么寄回", "签收三天了还能退吗", "退货要自己付运费吗", "{product}退回去要什么条件", "吊牌剪了还能退吗", "退货申请在哪里提交",
        "这个能无理由退吗", "帮我办个退货"],
 "en": ["how do I send back something I don't want", "I got it three days ago, can I still return it", "do I pay for the return shipping",
        "what are the conditions to return the {product}", "can I return it without tags", "where do I submit a return request",
        "can I return this for no reason", "set up a return for me"]},
"aftersales.exchange": {
 "zh": ["这个能调换吗", "换个大点的码", "{product}能换货吗", "换成别的款可以吗", "尺码小了能换吗", "换货多久能收到"],
 "en": ["can I trade this in for another", "swap it for a bigger size", "can the {product} be exchanged",
        "can I exchange it for a different style", "it's too small, can I exchange it", "how long until I get the replacement"]},
"aftersales.refund": {
 "zh": ["钱退了没有", "退款显示成功但是没到账", "多久能收到退款", "退款能退到微信吗", "怎么申请退款", "我的钱什么时候回来"],
 "en": ["did you refund me yet", "the refund says done but I don't have it", "how long do refunds take",
        "can the refund go to a different card", "how do I request a refund", "when will my money come back"]},
"aftersales.complaint": {
 "zh": ["东西有划痕", "收到的颜色不对", "衣服上有污渍", "你们这服务太差劲了", "我非常不满意", "商品和描述不符"],
 "en": ["the item is scratched", "I got the wrong color", "there's a stain on the shirt", "your service is awful",
        "I'm very unhappy with this", "the product isn't as described"]},
"aftersales.warranty": {
 "zh": ["保修卡丢了还能修吗", "{product}有质保吗", "质保期是多久", "坏了免费修吗", "送修要寄到哪里", "能上门维修吗"],
 "en": ["I lost the warranty card, can it still be repaired", "does the {product} have a guarantee", "how long is the guarantee",
        "is the repair free", "where do I send it for repair", "can someone come fix it"]},
"aftersales.invoice": {
 "zh": ["开票要提供什么", "发票能寄纸质的吗", "我还没收到发票", "怎么开专票", "发票金额不对"],
 "en": ["what do you need to issue an invoice", "can I get a paper invoice", "I haven't received my invoice",
        "how do I get a special VAT invoice", "the amount on the invoice is wrong"]},
"promo.coupon": {
 "zh": ["有什么优惠", "领券在哪里", "能不能打个折", "满多少包邮", "最近有没有促销", "积分能抵现金吗"],
 "en": ["what deals do you have", "where do I get coupons", "can you give me a discount", "what's the minimum for free shipping",
        "are you running any sales", "can points be used as cash"]},
"account.info": {
 "zh": ["我的会员卡", "怎么改账户密码", "我的账号被锁了", "怎么注销账号", "积分怎么没到账", "会员什么时候到期"],
 "en": ["my membership card", "how do I change my account password", "my account is locked", "how do I delete my account",
        "my points didn't show up", "when does my membership expire"]},
"handoff.human": {
 "zh": ["别让机器人回答", "找个活人", "请人工接听", "我要人工", "转客服专员"],
 "en": ["stop the bot, get me a human", "I need a live agent", "operator please", "I want a real agent", "can a human help me"]},
"chitchat.greeting": {
 "zh": ["喂", "你好呀", "晚上好", "嗨"],
 "en": ["hi", "hello there", "good evening", "hey there"]},
"chitchat.goodbye": {
 "zh": ["好的没问题了", "谢谢你的帮助", "行，就这样吧", "再见啦", "明白了谢谢", "太感谢了"],
 "en": ["okay that's all I needed", "thanks for your help", "alright, that's it", "see you", "got it, thanks", "thanks a lot"]},
"other": {
 "zh": ["你叫什么名字", "帮我写首诗", "明天会下雨吗", "推荐一部电视剧", "怎么减肥", "你们老板是谁", "今天星期几", "翻译一下这句话"],
 "en": ["what's your name", "write me a poem", "will it rain tomorrow", "recommend a TV show", "how do I lose weight",
        "who is your boss", "what day is it today", "translate this sentence"]},
}

# And a third, wider set per intent group: rambling context, fragments, dialect words, code-switching.
from templates_aftersales import EXTRA as _AFTERSALES  # noqa: E402
from templates_order import EXTRA as _ORDER  # noqa: E402
from templates_product import EXTRA as _PRODUCT  # noqa: E402
# A fourth, written against the confusions the classifier made: sentences right at the border of a
# neighbouring intent (has it shipped / where is it; change my order / change my account).
from templates_r2_aftersales import EXTRA2 as _AFTERSALES2  # noqa: E402
from templates_r2_order import EXTRA2 as _ORDER2  # noqa: E402
from templates_r2_product import EXTRA2 as _PRODUCT2  # noqa: E402
# A fifth, written by caller persona: elderly, terse, student slang, business buyer, dialect-coloured
# Mandarin, non-native English, distracted, half-remembering.
from templates_r3_aftersales import EXTRA3 as _AFTERSALES3  # noqa: E402
from templates_r3_order import EXTRA3 as _ORDER3  # noqa: E402
from templates_r3_product import EXTRA3 as _PRODUCT3  # noqa: E402
# A sixth, as a speech recogniser hands phone speech over: self-repairs, repetitions, fragments,
# homophone slips, and long turns with the request at the end.
from templates_r4_aftersales import EXTRA4 as _AFTERSALES4  # noqa: E402
from templates_r4_order import EXTRA4 as _ORDER4  # noqa: E402
from templates_r4_product import EXTRA4 as _PRODUCT4  # noqa: E402

for _more in (MORE, _PRODUCT, _ORDER, _AFTERSALES, _PRODUCT2, _ORDER2, _AFTERSALES2, _PRODUCT3, _ORDER3, _AFTERSALES3,
              _PRODUCT4, _ORDER4, _AFTERSALES4):
    for _intent, _by_lang in _more.items():
        for _lang, _items in _by_lang.items():
            T[_intent][_lang] = T[_intent][_lang] + _items
