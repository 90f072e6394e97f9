"""The HTML report template (jinja2, rendered with autoescaping on)."""

REPORT_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Grader report — {{ s.score.total | round(2) }} / {{ s.score.max | int }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
 table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
 th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }
 th:first-child, td:first-child { text-align: left; }
 th { background: #f3f3f3; }
 .total { font-size: 2rem; font-weight: bold; }
 .bad { color: #b00020; font-weight: bold; }
 .good { color: #1b7f3b; font-weight: bold; }
 .muted { color: #777; }
 img { max-width: 100%; }
 code { background: #f5f5f5; padding: 0 0.2rem; }
</style>
</head>
<body>
<h1>Recommendation service grading report</h1>
<p class="muted">{{ s.started_at }} → {{ s.finished_at }}; load took {{ s.load_duration_s | round(1) }} s.
 Recommendations <code>{{ s.parameters.recs_url }}</code>, events <code>{{ s.parameters.events_url }}</code>.</p>

<h2>HardML score</h2>
<p class="total">{{ s.score.total | round(2) }} / {{ s.score.max | int }}</p>
<table>
<tr><th>component</th><th>value</th><th>0 points at</th><th>10 points at</th><th>points</th></tr>
{% for name, c in s.score.components.items() %}
<tr><td>{{ name }}</td><td>{{ fmt(c.value) }}</td><td>{{ c.floor }}</td><td>{{ c.full }}</td>
<td>{{ c.points | round(2) }}</td></tr>
{% endfor %}
{% set b = s.score.latency_bonus %}
<tr><td>latency bonus (mean ms){% if not b.eligible %} — <span class="muted">not counted: quality below
 {{ s.score.bonus_threshold | int }} points</span>{% endif %}</td>
<td>{{ fmt(b.value, 1) }}</td><td>{{ b.floor }}</td><td>{{ b.full }}</td><td>{{ b.counted_points | round(2) }}</td></tr>
</table>

<h2>Quality against reference points</h2>
<table>
<tr><th>metric</th><th>system</th><th>oracle</th><th>perfect popularity</th></tr>
{% for name in ["precision", "ndcg", "diversity", "coverage"] %}
<tr><td>{{ name }}</td><td>{{ fmt(s.metrics[name]) }}</td><td>{{ fmt(s.reference.oracle[name]) }}</td>
<td>{{ fmt(s.reference.popularity[name]) }}</td></tr>
{% endfor %}
</table>
<p>System precision@10 is <b>{{ pct(s.reference.precision_pct_of_oracle) }}</b> of the oracle's and
<b>{{ pct(s.reference.precision_pct_of_popularity) }}</b> of perfect popularity's.
{{ s.metrics.hits }} hits in {{ s.metrics.slots }} slots ({{ s.metrics.calls }} calls by {{ s.metrics.users }} users);
{{ s.metrics.unique_items }} of {{ s.catalog_size }} catalog items recommended at least once.</p>

<h2>Latency of /recs</h2>
{% set l = s.metrics.latency_ms %}
<table>
<tr><th>calls</th><th>mean</th><th>p50</th><th>p95</th><th>p99</th></tr>
<tr><td>{{ l.count }}</td><td>{{ fmt(l.mean_ms, 1) }}</td><td>{{ fmt(l.p50_ms, 1) }}</td>
<td>{{ fmt(l.p95_ms, 1) }}</td><td>{{ fmt(l.p99_ms, 1) }}</td></tr>
</table>
<img alt="latency histogram" src="data:image/png;base64,{{ plots.latency }}">

<h2>Errors</h2>
<table>
<tr><th>kind</th><th>count</th></tr>
{% for name, count in s.errors.items() %}
<tr><td>{{ name }}</td><td class="{{ 'bad' if count else '' }}">{{ count }}</td></tr>
{% endfor %}
</table>
{% if s.failure_causes %}
<p>Failed /recs calls by cause:
{% for cause, count in s.failure_causes.items() -%}
{{ cause }} <b>{{ count }}</b>{% if not loop.last %}, {% endif %}
{%- endfor %}</p>
{% endif %}
{% if s.aborted %}<p class="bad"><b>Aborted:</b> {{ s.aborted }}</p>{% endif %}

<h2>Over time</h2>
<img alt="metrics over time" src="data:image/png;base64,{{ plots.over_time }}">

{% if s.groups %}
<h2>A/B experiment{% if s.experiment %} “{{ s.experiment.name }}”{% endif %}</h2>
{% if s.experiment %}
<table>
<tr><th>group</th><th>strategy</th><th>share</th><th>params</th></tr>
{% for g in s.experiment.groups %}
<tr><td>{{ g.name }}{% if g.name == s.groups.control %} (control){% endif %}</td><td>{{ g.strategy }}</td>
<td>{{ fmt(g.share) }}</td><td><code>{{ g.params | tojson }}</code></td></tr>
{% endfor %}
</table>
{% endif %}
<table>
<tr><th>group</th><th>users</th><th>calls</th><th>precision</th><th>NDCG</th><th>diversity</th><th>coverage</th>
<th>mean latency ms</th><th>errors</th></tr>
{% for name, g in s.groups.groups.items() %}
<tr><td>{{ name }}</td><td>{{ g.users }}</td><td>{{ g.calls }}</td><td>{{ fmt(g.precision) }}</td>
<td>{{ fmt(g.ndcg) }}</td><td>{{ fmt(g.diversity) }}</td><td>{{ fmt(g.coverage) }}</td>
<td>{{ fmt(g.latency_ms.mean_ms, 1) }}</td><td>{{ g.errors.total }}</td></tr>
{% endfor %}
</table>
<table>
<tr><th>treatment − control</th><th>metric</th><th>control</th><th>treatment</th><th>difference</th>
<th>95% interval</th><th>df</th><th>significant</th><th>CUPED difference</th><th>CUPED 95% interval</th>
<th>variance removed</th><th>significant (CUPED)</th></tr>
{% for e in s.groups.effects %}
<tr><td>{{ e.treatment }} − {{ e.control }}</td><td>{{ e.metric }}</td>
{% if e.diff is none %}<td colspan="10" class="muted">{{ e.reason or "fewer than two users in a group" }}</td>
{% else %}<td>{{ fmt(e.control_mean) }}</td><td>{{ fmt(e.treatment_mean) }}</td><td>{{ fmt(e.diff) }}</td>
<td>{% if e.estimable == false %}no variance{% else %}[{{ fmt(e.low) }}, {{ fmt(e.high) }}]{% endif %}</td>
<td>{{ fmt(e.df, 1) }}</td>
<td class="{{ 'good' if e.significant else 'muted' }}">{{ 'yes' if e.significant else 'no' }}</td>
{% if e.cuped %}<td>{{ fmt(e.cuped.diff) }}</td><td>[{{ fmt(e.cuped.low) }}, {{ fmt(e.cuped.high) }}]</td>
<td>{{ fmt(100 * e.cuped.variance_reduction, 0) }}%</td>
<td class="{{ 'good' if e.cuped.significant else 'muted' }}">{{ 'yes' if e.cuped.significant else 'no' }}</td>
{% else %}<td colspan="4" class="muted">—</td>{% endif %}{% endif %}</tr>
{% endfor %}
</table>
{% if plots.effects %}<img alt="effects" src="data:image/png;base64,{{ plots.effects }}">{% endif %}
{% if not s.groups.control_observed %}<p class="bad">The control {{ s.groups.control }} was not observed (no
 users): no effect can be estimated.</p>{% endif %}
{% for name, note in s.groups.group_notes.items() %}<p>Group {{ name }}: {{ note }}.</p>
{% endfor %}
{% for note in s.groups.notes %}<p class="muted">{{ note }}.</p>
{% endfor %}
{% if s.groups.users_switching_group %}<p class="bad">{{ s.groups.users_switching_group }} users were served by
 more than one group.</p>{% endif %}
{% endif %}

<h2>Definitions</h2>
<ul>
{% for name, text in s.definitions.items() %}<li><b>{{ name }}</b>: {{ text }}</li>
{% endfor %}
</ul>
<h2>Run parameters</h2>
<table>
{% for name, value in s.parameters.items() %}<tr><td>{{ name }}</td><td>{{ value }}</td></tr>
{% endfor %}
</table>
</body>
</html>
"""
