"""The AI Revenue Manager's skills: nightly prices and minimum stays (pricing v2,
`engine`), the rules an owner tunes (`rules`), and the review of how the changed
nights performed (`review`). Pure: no I/O, no clock — "today" is passed in."""

from agent_service.pricing.engine import (
    FACTOR_NAMES,
    UnknownTimezone,
    local_today,
    min_stay,
    orphan_gaps,
    price_listing,
    recommend_prices,
)
from agent_service.pricing.model import (
    Factor,
    ListingPricingInput,
    MarketNight,
    NightRecommendation,
    PricingResult,
    Stay,
)
from agent_service.pricing.review import (
    DecisionScore,
    ForecastNight,
    PerformanceReview,
    ScorecardWindow,
    review_performance,
    score_decisions,
    scorecard_window,
)
from agent_service.pricing.rules import DEFAULT_RULES, InvalidRules, PricingRules

__all__ = [
    "DEFAULT_RULES",
    "FACTOR_NAMES",
    "DecisionScore",
    "Factor",
    "ForecastNight",
    "InvalidRules",
    "ListingPricingInput",
    "MarketNight",
    "NightRecommendation",
    "PerformanceReview",
    "PricingResult",
    "PricingRules",
    "ScorecardWindow",
    "Stay",
    "UnknownTimezone",
    "local_today",
    "min_stay",
    "orphan_gaps",
    "price_listing",
    "recommend_prices",
    "review_performance",
    "score_decisions",
    "scorecard_window",
]
