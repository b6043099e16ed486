// The Porter (1980) suffix-stripping algorithm, written from its published description
// (M.F. Porter, "An algorithm for suffix stripping", Program 14(3)). Steps 1a..5b as in the
// paper; for each step only the rule with the longest matching suffix is considered, and if its
// condition fails the step does nothing.
#include <array>
#include <string>
#include <string_view>

#include "yunzhi/knowledge/text_analysis.h"

namespace yunzhi::knowledge {
namespace {

class Stemmer {
 public:
  explicit Stemmer(std::string_view w) : w_(w) {}

  std::string Run() {
    Step1a();
    Step1b();
    Step1c();
    Step2();
    Step3();
    Step4();
    Step5();
    return std::move(w_);
  }

 private:
  // True when w_[i] is a consonant: not a vowel, and 'y' only after a vowel (or at the start).
  bool Cons(size_t i) const {
    switch (w_[i]) {
      case 'a': case 'e': case 'i': case 'o': case 'u': return false;
      case 'y': return i == 0 ? true : !Cons(i - 1);
      default: return true;
    }
  }
  // m of the first `len` letters: the number of VC sequences in [C](VC)^m[V].
  int Measure(size_t len) const {
    int m = 0;
    size_t i = 0;
    while (i < len && Cons(i)) ++i;
    while (i < len) {
      while (i < len && !Cons(i)) ++i;  // V
      if (i >= len) break;
      while (i < len && Cons(i)) ++i;   // C
      ++m;
    }
    return m;
  }
  bool HasVowel(size_t len) const {
    for (size_t i = 0; i < len; ++i) {
      if (!Cons(i)) return true;
    }
    return false;
  }
  // *d: the first `len` letters end with a double consonant.
  bool DoubleCons(size_t len) const {
    return len >= 2 && w_[len - 1] == w_[len - 2] && Cons(len - 1);
  }
  // *o: ends consonant-vowel-consonant, the last not w, x or y.
  bool Cvc(size_t len) const {
    if (len < 3 || !Cons(len - 1) || Cons(len - 2) || !Cons(len - 3)) return false;
    char c = w_[len - 1];
    return c != 'w' && c != 'x' && c != 'y';
  }
  bool Ends(std::string_view s) const { return w_.size() >= s.size() && w_.ends_with(s); }
  // Length of the stem left when `suffix` is removed.
  size_t Stem(std::string_view suffix) const { return w_.size() - suffix.size(); }
  void Replace(std::string_view suffix, std::string_view with) {
    w_.resize(Stem(suffix));
    w_ += with;
  }

  void Step1a() {
    if (Ends("sses")) Replace("sses", "ss");
    else if (Ends("ies")) Replace("ies", "i");
    else if (Ends("ss")) {}
    else if (Ends("s")) Replace("s", "");
  }

  void Step1b() {
    if (Ends("eed")) {
      if (Measure(Stem("eed")) > 0) Replace("eed", "ee");
      return;
    }
    bool removed = false;
    if (Ends("ed") && HasVowel(Stem("ed"))) {
      Replace("ed", "");
      removed = true;
    } else if (Ends("ing") && HasVowel(Stem("ing"))) {
      Replace("ing", "");
      removed = true;
    }
    if (!removed) return;
    if (Ends("at")) Replace("at", "ate");
    else if (Ends("bl")) Replace("bl", "ble");
    else if (Ends("iz")) Replace("iz", "ize");
    else if (DoubleCons(w_.size())) {
      char c = w_.back();
      if (c != 'l' && c != 's' && c != 'z') w_.pop_back();
    } else if (Measure(w_.size()) == 1 && Cvc(w_.size())) {
      w_ += 'e';
    }
  }

  void Step1c() {
    if (Ends("y") && HasVowel(Stem("y"))) w_.back() = 'i';
  }

  struct Rule {
    std::string_view suffix, with;
  };

  // Applies the first (longest, by list order) matching rule when m(stem) > min_measure.
  template <size_t N>
  void ApplyRules(const std::array<Rule, N>& rules, int min_measure) {
    for (const Rule& r : rules) {
      if (!Ends(r.suffix)) continue;
      if (Measure(Stem(r.suffix)) > min_measure) Replace(r.suffix, r.with);
      return;
    }
  }

  void Step2() {
    // Ordered so that a longer suffix comes before any suffix it ends with.
    static constexpr std::array<Rule, 20> kRules = {{
        {"ational", "ate"}, {"tional", "tion"}, {"enci", "ence"}, {"anci", "ance"},
        {"izer", "ize"},    {"abli", "able"},   {"alli", "al"},   {"entli", "ent"},
        {"eli", "e"},       {"ousli", "ous"},   {"ization", "ize"}, {"ation", "ate"},
        {"ator", "ate"},    {"alism", "al"},    {"iveness", "ive"}, {"fulness", "ful"},
        {"ousness", "ous"}, {"aliti", "al"},    {"iviti", "ive"},   {"biliti", "ble"},
    }};
    ApplyRules(kRules, 0);
  }

  void Step3() {
    static constexpr std::array<Rule, 7> kRules = {{
        {"icate", "ic"}, {"ative", ""}, {"alize", "al"}, {"iciti", "ic"},
        {"ical", "ic"},  {"ful", ""},   {"ness", ""},
    }};
    ApplyRules(kRules, 0);
  }

  void Step4() {
    static constexpr std::array<std::string_view, 19> kSuffixes = {
        "ement", "ance", "ence", "able", "ible", "ment", "ant", "ent", "ion", "ism",
        "ate",   "iti",  "ous",  "ive",  "ize",  "al",   "er",  "ic",  "ou"};
    for (std::string_view s : kSuffixes) {
      if (!Ends(s)) continue;
      size_t stem = Stem(s);
      bool ok = Measure(stem) > 1;
      if (s == "ion") ok = ok && stem > 0 && (w_[stem - 1] == 's' || w_[stem - 1] == 't');
      if (ok) w_.resize(stem);
      return;
    }
  }

  void Step5() {
    if (Ends("e")) {
      size_t stem = Stem("e");
      int m = Measure(stem);
      if (m > 1 || (m == 1 && !Cvc(stem))) w_.pop_back();
    }
    if (Ends("ll") && Measure(w_.size()) > 1) w_.pop_back();
  }

  std::string w_;
};

}  // namespace

std::string PorterStem(std::string_view word) {
  if (word.size() <= 2) return std::string(word);
  for (char c : word) {
    if (c < 'a' || c > 'z') return std::string(word);
  }
  return Stemmer(word).Run();
}

}  // namespace yunzhi::knowledge
