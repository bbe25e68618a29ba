// The try-it page: call the CDS services the way an EHR does and show what comes back.
//
// 1. GET /try/request?<the page's URL state>: one request body per service of the hook, built on
//    the server from the example with the services' own prefetch templates.
// 2. POST each body to /cds-services/{id} (all at once, as the Sandbox does) and show the exact
//    request and response JSON.
// 3. POST the responses to /try/cards, which draws the cards as HTML with the same renderer as the
//    card gallery (detail Markdown rendered safely on the server); insert it.
// 4. Accepting a suggestion or dismissing a card POSTs CDS Hooks feedback to
//    /cds-services/{id}/feedback of the service that issued the card, as an EHR (and the Sandbox)
//    does, and shows that exchange in the request/response panel too.
// Text from responses is only ever set with textContent; the only HTML inserted is /try/cards'.
"use strict";

(function () {
  const root = document.getElementById("tryit");

  // Changing the example, hook or product reloads the page with the new state in the URL.
  const form = document.getElementById("view-form");
  if (form) {
    for (const input of form.querySelectorAll(".autosubmit")) {
      input.addEventListener("change", function () {
        // A different example or product starts from that example's own draft.
        if (input.name === "example" || input.name === "product") {
          for (const name of ["dose", "days"]) {
            const field = form.elements.namedItem(name);
            if (field) field.disabled = true;
          }
        }
        if (input.name === "example") {
          const product = form.elements.namedItem("product");
          if (product) product.disabled = true;
          for (const radio of form.querySelectorAll("input[name=hook]")) radio.disabled = true;
        }
        form.submit();
      });
    }
  }

  // Suggestions show the FHIR resource they would create, update or delete; Accept applies one and
  // Dismiss greys a card out with the chosen override reason. On the try page both send feedback
  // to the service that issued the card; the gallery's cards were issued by no call, so there
  // they only change the page.
  const feedbackPaths = new Map(); // serviceId -> its feedback URL, from the request plan
  document.addEventListener("click", onClick);
  if (!root) return; // the card gallery: cards are drawn on the server, nothing to call

  // The URL names the whole view (defaults filled in), so a copied link reproduces it.
  if (root.dataset.pageUrl && window.location.pathname + window.location.search !== root.dataset.pageUrl) {
    window.history.replaceState(null, "", root.dataset.pageUrl);
  }

  const cardsBox = document.getElementById("cards");
  const status = document.getElementById("cards-status");

  function pretty(value) {
    return JSON.stringify(value, null, 2);
  }

  function exchangeFor(serviceId) {
    for (const box of document.querySelectorAll(".exchange:not(.exchange--feedback)")) {
      if (box.dataset.service === serviceId) return box;
    }
    return null;
  }

  function showMessage(text, kind) {
    const p = document.createElement("p");
    p.className = "no-cards" + (kind ? " no-cards--" + kind : "");
    p.textContent = text;
    cardsBox.replaceChildren(p);
  }

  async function callService(call) {
    const box = exchangeFor(call.serviceId);
    const body = JSON.stringify(call.request);
    if (box) box.querySelector(".request-json").textContent = pretty(call.request);
    let response;
    try {
      response = await fetch(call.path, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: body,
      });
    } catch (error) {
      if (box) box.querySelector(".status").textContent = "network error";
      return { serviceId: call.serviceId, ok: false, status: 0, error: String(error) };
    }
    let document_ = null;
    const text = await response.text();
    try {
      document_ = JSON.parse(text);
    } catch (error) {
      document_ = null;
    }
    if (box) {
      const badge = box.querySelector(".status");
      badge.textContent = response.status + " " + response.statusText;
      badge.dataset.status = String(response.status);
      box.querySelector(".response-json").textContent =
        document_ === null ? text : pretty(document_);
    }
    return { serviceId: call.serviceId, ok: response.ok, status: response.status, body: document_ };
  }

  async function run() {
    let plan;
    try {
      const answer = await fetch(root.dataset.requestUrl, { headers: { Accept: "application/json" } });
      plan = await answer.json();
      if (!answer.ok) throw new Error((plan.issue && plan.issue[0].diagnostics) || answer.status);
    } catch (error) {
      showMessage("Could not build the requests: " + error.message, "error");
      return;
    }
    for (const call of plan.calls) feedbackPaths.set(call.serviceId, call.path + "/feedback");
    const results = await Promise.all(plan.calls.map(callService));
    const failed = results.filter((r) => !r.ok);
    const answered = results.filter((r) => r.ok && r.body && Array.isArray(r.body.cards));
    await showCards(answered.map((r) => ({ serviceId: r.serviceId, response: r.body })));
    const count = answered.reduce((n, r) => n + r.body.cards.length, 0);
    status.textContent =
      count + " card" + (count === 1 ? "" : "s") + " from " + answered.length + " of " +
      results.length + " service" + (results.length === 1 ? "" : "s");
    if (failed.length) {
      const unauthorized = failed.some((r) => r.status === 401);
      const note = document.createElement("p");
      note.className = "no-cards no-cards--error call-failed";
      note.textContent = unauthorized
        ? "The service answered 401 Unauthorized: authentication is on and this page cannot " +
          "sign a CDS client JWT. Run the service with MYOCDS_AUTH=off to see the cards here."
        : "Some services did not answer 200 (" +
          failed.map((r) => r.serviceId + ": " + (r.status || "no answer")).join(", ") +
          "); see their responses.";
      cardsBox.prepend(note);
    }
  }

  async function showCards(responses) {
    if (!responses.length) {
      cardsBox.replaceChildren();
      return;
    }
    const answer = await fetch(root.dataset.cardsUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/html" },
      body: JSON.stringify({ responses: responses }),
    });
    if (!answer.ok) {
      showMessage("Could not draw the cards (" + answer.status + ").", "error");
      return;
    }
    // Server-rendered with every value escaped (tryit/_card.html, tryit/markdown.py).
    cardsBox.innerHTML = await answer.text();
  }

  // One exchange box per feedback post, built with textContent only, after the hook calls.
  function feedbackExchange(serviceId, path, outcome) {
    const box = document.createElement("details");
    box.className = "exchange exchange--feedback";
    box.dataset.service = serviceId;
    box.dataset.outcome = outcome;
    box.open = true;
    const summary = document.createElement("summary");
    const method = document.createElement("span");
    method.className = "method";
    method.textContent = "POST";
    const url = document.createElement("code");
    url.textContent = path;
    const badge = document.createElement("span");
    badge.className = "status";
    badge.dataset.status = "";
    badge.textContent = "…";
    const label = document.createElement("span");
    label.className = "muted feedback-label";
    label.textContent = "feedback: " + outcome;
    summary.append(method, " ", url, " ", badge, " ", label);
    box.append(summary);
    for (const [title, cls] of [["Request", "request-json"], ["Response", "response-json"]]) {
      const heading = document.createElement("h4");
      heading.textContent = title;
      const pre = document.createElement("pre");
      pre.className = "json " + cls;
      box.append(heading, pre);
    }
    document.getElementById("exchanges").append(box);
    return box;
  }

  // POST one feedback item for a card (CDS Hooks 2.0 §Feedback) and report on the card how it
  // went. Returns without sending when the card cannot be fed back: no uuid (the spec sends no
  // feedback then) or a service this page did not call.
  async function sendFeedback(card, item, outcome) {
    const note = card.querySelector(".card-outcome");
    const serviceId = card.dataset.service;
    const path = serviceId ? feedbackPaths.get(serviceId) : undefined;
    if (!card.dataset.uuid || !path) {
      note.textContent = "No feedback sent: " +
        (card.dataset.uuid ? "no service of this page issued the card." : "the card has no uuid.");
      note.hidden = false;
      return;
    }
    const body = { feedback: [Object.assign({ card: card.dataset.uuid, outcome: outcome }, item)] };
    const box = feedbackExchange(serviceId, path, outcome);
    box.querySelector(".request-json").textContent = pretty(body);
    note.textContent = "Sending feedback (" + outcome + ") to " + serviceId + "…";
    note.hidden = false;
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      });
    } catch (error) {
      box.querySelector(".status").textContent = "network error";
      note.textContent = "Feedback not delivered: " + String(error);
      return;
    }
    const text = await response.text();
    let parsed = null;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      parsed = null;
    }
    const badge = box.querySelector(".status");
    badge.textContent = response.status + " " + response.statusText;
    badge.dataset.status = String(response.status);
    box.querySelector(".response-json").textContent = parsed === null ? text : pretty(parsed);
    note.textContent = "Feedback (" + outcome + ") sent to " + serviceId + ": " +
      response.status + " " + response.statusText;
    note.dataset.status = String(response.status);
  }

  // A card takes one outcome, as in an EHR: once accepted or dismissed its controls are done.
  function closeCard(card) {
    for (const control of card.querySelectorAll("button.accept, button.dismiss, select.override-reason")) {
      control.disabled = true;
    }
  }

  function nowRfc3339() {
    // toISOString is always UTC with a "Z": the instant RFC 3339 §5.6 and the spec ask for.
    return new Date().toISOString();
  }

  function onClick(event) {
    const accept = event.target.closest("button.accept");
    if (accept) {
      const card = accept.closest(".card");
      const chosen = Array.from(card.querySelectorAll("button.suggestion"))
        .find((button) => button.getAttribute("aria-controls") === accept.dataset.suggestion);
      closeCard(card);
      card.classList.add("card--accepted");
      const label = chosen ? chosen.textContent.trim() : "suggestion";
      const note = card.querySelector(".card-outcome");
      note.textContent = "Accepted: " + label;
      note.hidden = false;
      if (!root) return;
      if (!chosen || !chosen.dataset.uuid) {
        note.textContent = "Accepted: " + label + ". No feedback sent: the suggestion has no uuid.";
        return;
      }
      sendFeedback(card, {
        acceptedSuggestions: [{ id: chosen.dataset.uuid }],
        outcomeTimestamp: nowRfc3339(),
      }, "accepted");
      return;
    }
    const suggestion = event.target.closest("button.suggestion");
    if (suggestion) {
      const panel = document.getElementById(suggestion.getAttribute("aria-controls"));
      const open = suggestion.getAttribute("aria-expanded") !== "true";
      suggestion.setAttribute("aria-expanded", String(open));
      suggestion.classList.toggle("suggestion--chosen", open);
      if (panel) panel.hidden = !open;
      return;
    }
    const dismiss = event.target.closest("button.dismiss");
    if (dismiss) {
      const card = dismiss.closest(".card");
      const select = card.querySelector(".override-reason");
      const option = select && select.value ? select.options[select.selectedIndex] : null;
      card.classList.add("card--dismissed");
      const note = card.querySelector(".dismissed-note");
      note.textContent = "Dismissed: " + (option ? option.text : "no reason given");
      note.hidden = false;
      closeCard(card);
      if (!root) return;
      const item = { outcomeTimestamp: nowRfc3339() };
      if (option) {
        const reason = { code: option.value };
        if (option.dataset.system) reason.system = option.dataset.system;
        reason.display = option.text;
        item.overrideReason = { reason: reason };
      }
      sendFeedback(card, item, "overridden");
    }
  }

  // Test hook: draw any CDS Hooks response through the page's own path (used by the browser
  // tests to check that hostile card content renders inert).
  window.myocdsTryIt = { showCards: showCards };

  run();
})();
