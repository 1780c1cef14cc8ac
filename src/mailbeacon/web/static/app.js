// mailbeacon's dashboard: a little JavaScript on top of server-rendered pages. Everything that
// came from a recipient's request or from mail is put in the page as text, never as markup.
"use strict";

const WHAT = { "email.opened": "opened", "email.clicked": "clicked", "email.bounced": "bounced",
  "email.unsubscribed": "unsubscribed" };

function describe(type, event) {
  const data = event.data;
  const client = data.client || {};
  const details = [client.type, client.os].filter(Boolean).join(", ");
  const device = client.name ? client.name + (details ? " (" + details + ")" : "") : data.error || "";
  return { what: WHAT[type] || type, data, device };
}

function feedItem(type, event) {
  const { what, data, device } = describe(type, event);
  const item = document.createElement("li");
  const time = document.createElement("time");
  time.dateTime = event.timestamp;
  time.textContent = event.timestamp.slice(11, 19);
  const kind = document.createElement("strong");
  kind.textContent = what;
  item.append(time, " ", kind, " " + (data.recipient || "") + " · “");
  if (data.message_id) {
    const link = document.createElement("a");
    link.href = "/messages/" + encodeURIComponent(data.message_id);
    link.textContent = data.subject || "";
    item.append(link);
  } else {
    item.append(data.subject || "");
  }
  item.append("”" + (device ? " · " + device : ""));
  return item;
}

function notify(type, event) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  if (type !== "email.opened" && type !== "email.clicked") return;
  const { what, data, device } = describe(type, event);
  new Notification(data.recipient + " " + what + " “" + (data.subject || "") + "”", { body: device });
}

function follow(feed) {
  const campaign = feed.dataset.campaign;
  const source = new EventSource(feed.dataset.live);
  for (const type of Object.keys(WHAT)) {
    source.addEventListener(type, (message) => {
      const event = JSON.parse(message.data);
      if (campaign !== undefined && event.data.campaign !== campaign) return;
      feed.prepend(feedItem(type, event));
      const empty = document.getElementById("feed-empty");
      if (empty) empty.hidden = true;
      notify(type, event);
    });
  }
}

function offerNotifications() {
  const button = document.getElementById("notify");
  const state = document.getElementById("notify-state");
  if (!button || !("Notification" in window)) return;
  const show = () => {
    button.hidden = Notification.permission !== "default";
    state.textContent = Notification.permission === "granted"
      ? "This browser notifies you of people's opens and clicks." : "";
  };
  button.addEventListener("click", () => Notification.requestPermission().then(show));
  show();
}

document.addEventListener("DOMContentLoaded", () => {
  const feed = document.getElementById("feed");
  if (feed && feed.dataset.live) follow(feed);
  offerNotifications();
});
