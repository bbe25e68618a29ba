// The try-it page: call the CDS services the way an EHR does and show what comes back.
//
// 1. GET /try/request?<the page's URL state>: one request body per service of the hook, built on
//    the server from the example with the services' own prefetch templates.
// 2. POST each body to /cds-services/{id} (all at once, as the Sandbox does) and show the exact
//    request and response JSON.
// 3. POST the responses to /try/cards, which draws the cards as HTML with the same renderer as the
//    card gallery (detail Markdown rendered safely on the server); insert it.
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

  // Suggestions show the FHIR resource they would create, update or delete; Dismiss hides a card
  // with the chosen override reason, as an EHR does (no feedback is sent from this page).
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
    for (const box of document.querySelectorAll(".exchange")) {
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

  function onClick(event) {
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
      const reason =
        select && select.value ? select.options[select.selectedIndex].text : "no reason given";
      card.classList.add("card--dismissed");
      const note = card.querySelector(".dismissed-note");
      note.textContent = "Dismissed: " + reason;
      note.hidden = false;
      dismiss.disabled = true;
    }
  }

  // Test hook: draw any CDS Hooks response through the page's own path (used by the browser
  // tests to check that hostile card content renders inert).
  window.myocdsTryIt = { showCards: showCards };

  run();
})();
