# exposure bias plot made by tutor eval; data in the .dat beside it
set terminal pngcairo size 1100,440 font ',10'
set output 'docs/exposure-bias-small-vs-teacher.png'
set datafile missing 'NaN'
set multiplot layout 1,2 title 'exposure bias of build/runs/small against oracle build/runs/teacher'
set key top left
set grid
set xlabel 'l (target tokens)'
set ylabel 'accumulated KL(oracle || model), nats'
plot 'docs/exposure-bias-small-vs-teacher.dat' using 1:2 with linespoints title 'R_{free}(l): own prefixes', '' using 1:3 with linespoints title 'R_{ref}(l): reference prefixes'
set ylabel 'ExAccErr(l), %'
unset key
plot 'docs/exposure-bias-small-vs-teacher.dat' using 1:4 with linespoints lc rgb '#b03030'
unset multiplot
